"""A task that was running when the server stopped is run again when it starts; blobs nobody
refers to any more are collected."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from tests.server.inprocess import settings_for, signed_in, task_end
from tether.server.db.engine import new_id, utcnow
from tether.server.db.tables import file_tasks
from tether.server.files.tree import collect_blobs


def test_a_task_left_running_is_finished_after_a_restart(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    async def main() -> str:
        async with signed_in(settings) as (http, state):
            put = await http.put("/api/v1/files/data/a/file.txt", content=b"bytes")
            assert put.status_code == 200
            org = (await http.get("/api/v1/auth/whoami")).json()["organization"]["id"]
            task_id = new_id()
            async with state.engine.begin() as conn:
                await conn.execute(
                    file_tasks.insert().values(
                        id=task_id,
                        org_id=org,
                        scope="-",
                        op="move",
                        path="/a",
                        target="/b",
                        status="running",
                        progress=0.0,
                        error=None,
                        created_at=utcnow(),
                        updated_at=utcnow(),
                    )
                )
        async with signed_in(settings) as (http, state):
            assert (await task_end(http, task_id))["status"] == "succeeded"
            moved = await http.get("/api/v1/files/data/b/file.txt")
            assert moved.content == b"bytes"
            assert (await http.get("/api/v1/files/info/a")).status_code == 404
            async with state.engine.connect() as conn:
                left = await conn.execute(
                    sa.select(sa.func.count()).where(file_tasks.c.status != "succeeded")
                )
                return str(left.scalar())

    assert asyncio.run(main()) == "0"


def test_blobs_nobody_refers_to_are_collected(tmp_path: Path) -> None:
    async def main() -> None:
        async with signed_in(settings_for(tmp_path)) as (http, state):
            one = (await http.put("/api/v1/files/data/one", content=b"same")).json()["sha256"]
            await http.put("/api/v1/files/data/two", content=b"same")
            lone = (await http.put("/api/v1/files/data/lone", content=b"lonely")).json()["sha256"]
            for path in ("/one", "/lone"):
                task = (
                    await http.post("/api/v1/files/tasks", json={"op": "remove", "path": path})
                ).json()
                assert (await task_end(http, task["id"]))["status"] == "succeeded"
            assert await collect_blobs(state, idle=3600) == 0
            assert await state.blobs.exists(lone)
            assert await collect_blobs(state, idle=0) == 1
            assert not await state.blobs.exists(lone)
            assert await state.blobs.exists(one)
            assert (await http.get("/api/v1/files/data/two")).content == b"same"

    asyncio.run(main())
