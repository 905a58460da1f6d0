"""A task that was running when the server stopped is run again when it starts; blobs nobody
refers to any more are collected."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.server.inprocess import settings_for, signed_in, task_end
from tether.server.db.engine import new_id, utcnow
from tether.server.db.tables import file_tasks
from tether.server.files import tasks
from tether.server.files.blobs import collect_blobs


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
            assert (
                await collect_blobs(
                    state.engine, state.reader, state.blobs, state.settings.blob_grace, idle=3600
                )
                == 0
            )
            assert await state.blobs.exists(lone)
            assert (
                await collect_blobs(
                    state.engine, state.reader, state.blobs, state.settings.blob_grace, idle=0
                )
                == 1
            )
            assert not await state.blobs.exists(lone)
            assert await state.blobs.exists(one)
            assert (await http.get("/api/v1/files/data/two")).content == b"same"

    asyncio.run(main())


async def _left_task(state: Any, org: str, op: str, **values: Any) -> str:
    """A task row as a stopped (or live) server would leave it."""
    task_id = new_id()
    async with state.engine.begin() as conn:
        await conn.execute(
            file_tasks.insert().values(
                id=task_id,
                org_id=org,
                scope="-",
                op=op,
                path="/a",
                target="/b" if op != "remove" else None,
                status="running",
                progress=0.0,
                error=None,
                created_at=utcnow(),
                updated_at=utcnow(),
                **values,
            )
        )
    return task_id


def test_a_task_a_live_sibling_holds_is_not_run_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with signed_in(settings_for(tmp_path)) as (http, state):
            await http.put("/api/v1/files/data/a/file.txt", content=b"bytes")
            org = (await http.get("/api/v1/auth/whoami")).json()["organization"]["id"]
            held = await _left_task(
                state,
                org,
                "copy",
                lease_owner="a-live-sibling",
                lease_until=utcnow() + dt.timedelta(seconds=60),
            )
            await tasks.resume_tasks(state)
            await tasks.run_task(state, held)
            assert (await http.get(f"/api/v1/files/tasks/{held}")).json()["status"] == "running"
            assert (await http.get("/api/v1/files/info/b")).status_code == 404
            async with state.engine.begin() as conn:
                await conn.execute(
                    file_tasks.update()
                    .where(file_tasks.c.id == held)
                    .values(lease_until=utcnow() - dt.timedelta(seconds=1))
                )
            await tasks.resume_tasks(state)
            assert (await http.get(f"/api/v1/files/tasks/{held}")).json()["status"] == "succeeded"
            assert (await http.get("/api/v1/files/data/b/file.txt")).content == b"bytes"

    asyncio.run(main())


def test_a_lease_is_taken_by_one_claim_at_a_time(tmp_path: Path) -> None:
    """A claim is one conditional UPDATE: while a lease is live no other claim gets it, and a
    finished task is claimed by nobody."""

    async def main() -> None:
        async with signed_in(settings_for(tmp_path)) as (http, state):
            await http.put("/api/v1/files/data/a/file.txt", content=b"bytes")
            org = (await http.get("/api/v1/auth/whoami")).json()["organization"]["id"]
            left = await _left_task(state, org, "copy")
            assert await tasks._claim(state, left)
            assert not await tasks._claim(state, left)
            await tasks.run_task(state, left)
            assert (await http.get(f"/api/v1/files/tasks/{left}")).json()["status"] == "running"
            async with state.engine.begin() as conn:
                await conn.execute(
                    file_tasks.update()
                    .where(file_tasks.c.id == left)
                    .values(lease_until=utcnow() - dt.timedelta(seconds=1))
                )
            await tasks.run_task(state, left)
            task = (await http.get(f"/api/v1/files/tasks/{left}")).json()
            assert (task["status"], task.get("error")) == ("succeeded", None)
            assert not await tasks._claim(state, left)
            listed = (await http.get("/api/v1/files/list")).json()["results"]
            assert sorted(entry["name"] for entry in listed) == ["a", "b"]

    asyncio.run(main())
