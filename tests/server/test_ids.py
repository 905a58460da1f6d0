"""Ids sort in the order they were made, also many in one millisecond (a batch of events or
commands keeps its order in keyset pages)."""

from __future__ import annotations

import uuid

from tether.server.db.engine import new_id


def test_ids_made_in_a_burst_sort_in_the_order_they_were_made() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}
