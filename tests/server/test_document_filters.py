"""Finding resources by their document's fields, as the original SDKs did
(`find_feeds({'subtype': ...})`), on both back ends, with the subtype index in use."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import tether
from tests.conftest import RunningServer, Tenant
from tether.server.db.engine import create_engine
from tether.server.db.tables import resources
from tether.server.resources.kinds import KINDS, scope_params
from tether.server.resources.queries import scoped_resources
from tether.server.settings import Settings


def names(found: Any) -> list[str]:
    return sorted(item.name for item in found)


def test_find_by_document_fields(client: tether.Client) -> None:
    client.feeds.create("fb", {"subtype": "scala:feed:facebook", "level": 7})
    client.feeds.create("fb-text", {"subtype": "scala:feed:facebook", "level": "7"})
    client.feeds.create("weather", {"subtype": "scala:feed:weather", "on": True})
    client.feeds.create("nested", {"address": {"city": "Oslo", "zip": "0150"}, "on": False})
    assert names(client.feeds.find(subtype="scala:feed:facebook")) == ["fb", "fb-text"]
    assert names(client.feeds.find(document={"subtype": "scala:feed:weather"})) == ["weather"]
    assert names(client.feeds.find(level=7)) == ["fb", "fb-text"]
    assert names(client.feeds.find(on=True)) == ["weather"]
    assert names(client.feeds.find(on=False)) == ["nested"]
    assert names(client.feeds.find(**{"address.city": "Oslo"})) == ["nested"]
    assert names(client.feeds.find(**{"address.zip": "0150"})) == ["nested"]
    assert names(client.feeds.find(subtype="scala:feed:facebook", level="7")) == [
        "fb",
        "fb-text",
    ]
    assert names(client.feeds.find(subtype="nope")) == []
    assert names(client.feeds.find(address="Oslo")) == []
    found = client.feeds.find(subtype="scala:feed:facebook", name="fb")
    assert (found.total, names(found)) == (1, ["fb"])


def test_related_lists_take_document_fields_too(client: tether.Client) -> None:
    hq = client.locations.create("HQ")
    client.devices.create("p1", {"subtype": "player"}, location_id=hq.id)
    client.devices.create("s1", {"subtype": "sensor"}, location_id=hq.id)
    client.devices.create("p2", {"subtype": "player"})
    assert names(hq.get_devices(subtype="player")) == ["p1"]
    assert names(client.devices.find(subtype="player")) == ["p1", "p2"]


def test_pages_of_matches_walk_every_match_once(client: tether.Client) -> None:
    for n in range(7):
        client.things.create(f"t{n}", {"subtype": "tag" if n % 2 else "other", "n": n})
    found = client.things.find(subtype="tag", limit=2)
    assert found.total == 3
    assert names(found) == ["t1", "t3", "t5"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"document": "x"}, "document"),
        ({"document[]": "x"}, "document[]"),
        ({"document[a b]": "x"}, "document[a b]"),
        ({"document[a..b]": "x"}, "document[a..b]"),
        ({"document[" + ".".join("a" * 9) + "]": "x"}, "document[a.a.a.a.a.a.a.a.a]"),
        ({"document[a]": "x" * 1001}, "document[a]"),
        ({f"document[f{n}]": "x" for n in range(6)}, "document"),
    ],
)
def test_bad_document_filters_are_refused_by_name(
    tenant: Tenant, query: dict[str, str], named: str
) -> None:
    with tenant.client() as client:
        token = client.get_auth().token
    answer = httpx.get(
        f"{tenant.url}/api/v1/devices", params=query, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid_parameter"
    assert named in answer.json()["detail"]


def test_the_subtype_index_serves_a_subtype_page(server: RunningServer) -> None:
    """The statement a subtype filter runs reads its page from the subtype index, in id order
    (on PostgreSQL with sequential scans off: a test table is too small to need an index)."""
    settings = Settings.load({"data": server.data, "database_url": server.database_url}, environ={})
    params = scope_params(KINDS["device"], "org", None) | {"doc_0_0": '"player"'}
    page = scoped_resources(False, (), (("subtype", 1),)).order_by(resources.c.id).limit(51)

    async def plan() -> str:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with engine.connect() as conn:
                sql = page.params(**params).compile(
                    dialect=conn.dialect, compile_kwargs={"literal_binds": True}
                )
                if conn.dialect.name == "sqlite":
                    rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
                else:
                    await conn.exec_driver_sql("SET enable_seqscan = off")
                    rows = await conn.exec_driver_sql(f"EXPLAIN {sql}")
                return "\n".join(str(row[-1]) for row in rows)
        finally:
            await engine.dispose()

    shown = asyncio.run(plan())
    assert "ix_resources_subtype" in shown, shown
