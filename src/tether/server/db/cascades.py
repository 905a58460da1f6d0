"""What deleting a device, an app or a project means beyond its own row. Each area declares it
for its own tables with `@on_delete(kind)`; `forget` runs every declaration in the transaction
that deletes the row, so a delete commits whole or not at all, and the area that deletes (the
resources package) imports no other area's tables.

A declaration gets the connection, the server's state (for an area's own caches) and the ids
going away, in batches of at most `BATCH`. A project's declarations run before its held
resources are deleted; the resources area then forgets each held device and app as if it were
deleted alone, so their own declarations run too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

BATCH = 500
"""Ids handed to a declaration at once (a statement's IN list stays small)."""


@dataclass(frozen=True)
class Gone:
    """Rows being deleted, inside the deleting transaction."""

    conn: AsyncConnection
    state: Any
    """The server's state (`ServerState`), typed loosely so this module stays at the bottom."""
    org_id: str
    kind: str
    ids: Sequence[str]


Forget = Callable[[Gone], Awaitable[None]]

_DECLARED: dict[str, list[Forget]] = {}


def on_delete(*kinds: str) -> Callable[[Forget], Forget]:
    """Declare `forget(gone)` as what deleting a row of these kinds means for an area."""

    def declare(forget: Forget) -> Forget:
        for kind in kinds:
            _DECLARED.setdefault(kind, []).append(forget)
        return forget

    return declare


def declared(kind: str) -> tuple[str, ...]:
    """Who declared something for deleting `kind` (`module.function`), for tests and docs."""
    return tuple(f"{f.__module__}.{f.__qualname__}" for f in _DECLARED.get(kind, ()))


async def forget(
    conn: AsyncConnection, state: Any, org_id: str, kind: str, ids: Sequence[str]
) -> None:
    """Run every declaration for deleting these rows of `kind` (of organization `org_id`),
    batch by batch."""
    for start in range(0, len(ids), BATCH):
        gone = Gone(conn, state, org_id, kind, tuple(ids[start : start + BATCH]))
        for declaration in _DECLARED.get(kind, ()):
            await declaration(gone)
