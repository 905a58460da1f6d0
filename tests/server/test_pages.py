"""Pages: totals exact for short lists and kept for long ones, cursors that walk every row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.server.inprocess import settings_for, signed_in
from tether.server.db import pages
from tether.server.db.prepared import BuiltPerRequest, prepare
from tether.server.db.tables import resources

pytestmark = pytest.mark.anyio


async def walk(http: httpx.AsyncClient, url: str) -> tuple[list[int], list[str]]:
    """Every page of a list from `url`: the totals the pages gave and the names of the rows."""
    totals, names = [], []
    next_url: str | None = url
    while next_url:
        page: dict[str, Any] = (await http.get(next_url)).json()
        totals.append(page["total"])
        names += [row["name"] for row in page["results"]]
        next_url = page["next"]
    return totals, names


async def test_pages_of_a_short_list_carry_its_exact_total(tmp_path: Path) -> None:
    async with signed_in(settings_for(tmp_path)) as (http, _state):
        for n in range(7):
            assert (await http.post("/api/v1/things", json={"name": f"t{n}"})).status_code == 201
        totals, names = await walk(http, "/api/v1/things?limit=3")
        assert totals == [7, 7, 7]
        assert names == [f"t{n}" for n in range(7)]


async def test_a_folder_listing_pages_by_path(tmp_path: Path) -> None:
    async with signed_in(settings_for(tmp_path)) as (http, _state):
        for name in ("c", "a", "b"):
            created = await http.post("/api/v1/files/folders", json={"path": f"/{name}"})
            assert created.status_code == 201, created.text
        totals, names = await walk(http, "/api/v1/files/list?limit=2")
        assert totals == [3, 3]
        assert names == ["a", "b", "c"]


async def test_a_long_list_is_counted_whole_once_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "EXACT_UP_TO", 5)
    monkeypatch.setattr(pages, "LONG_COUNT_TTL", 3600.0)
    monkeypatch.setattr(pages, "_long_counts", {})
    async with signed_in(settings_for(tmp_path)) as (http, _state):
        for n in range(8):
            assert (await http.post("/api/v1/zones", json={"name": f"z{n}"})).status_code == 201
        totals, names = await walk(http, "/api/v1/zones?limit=3")
        assert totals == [8, 8, 8]
        assert len(names) == 8
        await http.post("/api/v1/zones", json={"name": "late"})
        kept = (await http.get("/api/v1/zones?limit=3")).json()
        assert kept["total"] == 8, "the long count is kept, not recounted per page"
        pages._long_counts.clear()
        assert (await http.get("/api/v1/zones?limit=3")).json()["total"] == 9


def test_a_statement_built_twice_is_refused() -> None:
    from sqlalchemy.dialects import sqlite

    def build() -> sa.Select[Any]:
        return sa.select(resources.c.id).where(resources.c.name == sa.bindparam("pages_test"))

    dialect = sqlite.dialect()
    once = build()
    assert prepare(once, dialect) is prepare(once, dialect)
    with pytest.raises(BuiltPerRequest):
        prepare(build(), dialect)
