"""Prepared statements on the driver give the rows SQLAlchemy gives, on both back ends."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa

import tether
from tests.conftest import RunningServer
from tether.server.db.engine import create_engine
from tether.server.db.prepared import prepare
from tether.server.db.reads import Reader, fetch
from tether.server.db.tables import resources
from tether.server.resources.queries import scoped_resources
from tether.server.settings import Settings


def test_prepared_rows_equal_sqlalchemy_rows(server: RunningServer, client: tether.Client) -> None:
    zone = client.zones.create("z")
    placed = client.devices.create("placed", document={"n": 1, "none": None}, zone_ids=[zone.id])
    client.devices.create("plain")
    client.apps.create("reader", read_only=True)
    org_id = client.whoami()["organization"]["id"]
    statement = scoped_resources(False).order_by(resources.c.id)
    settings = Settings.load({"data": server.data, "database_url": server.database_url}, environ={})

    async def compare() -> None:
        engine = create_engine(settings.resolved_database_url)
        reader = Reader(engine)
        try:
            for kind in ("device", "app"):
                params = {"org_id": org_id, "kind": kind}
                async with reader.connect() as reads:
                    fast = await fetch(reads, statement, params)
                    slow = (await reads.execute(statement, params)).all()
                assert [tuple(r) for r in fast] == [tuple(r) for r in slow]
                assert fast, kind
                for row in fast:
                    assert row.created_at.tzinfo is not None
                    assert isinstance(row.read_only, bool | None)
            async with reader.connect() as reads:
                rows = await fetch(reads, statement, {"org_id": org_id, "kind": "device"})
            by_id = {r.id: r for r in rows}
            assert by_id[placed.id].zone_list == zone.id
            assert isinstance(by_id[placed.id].created_at, dt.datetime)
        finally:
            await reader.dispose()
            await engine.dispose()

    asyncio.run(compare())


def test_statements_with_in_lists_are_refused() -> None:
    from sqlalchemy.dialects import sqlite

    statement = sa.select(resources.c.id).where(
        resources.c.id.in_(sa.bindparam("ids", expanding=True))
    )
    with pytest.raises(ValueError, match="expanding"):
        prepare(statement, sqlite.dialect())
