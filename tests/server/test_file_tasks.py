"""A task that was running when the server stopped is run again when it starts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from tether.server.app import create_app
from tether.server.database import new_id, utcnow
from tether.server.settings import Settings
from tether.server.state import ServerState
from tether.server.tables import file_tasks


def test_a_task_left_running_is_finished_after_a_restart(tmp_path: Path) -> None:
    settings = Settings.load(
        {"data": tmp_path, "admin_username": "admin", "admin_password": "admin-password"},
        environ={},
    )
    login = {
        "grant_type": "password",
        "username": "admin",
        "password": "admin-password",
        "organization": "main",
    }

    async def signed_in(http: AsyncTestClient) -> None:  # type: ignore[type-arg]
        token = (await http.post("/api/v1/auth/token", json=login)).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"

    async def main() -> str:
        app = create_app(settings)
        async with AsyncTestClient(app) as http:
            await signed_in(http)
            put = await http.put("/api/v1/files/data/a/file.txt", content=b"bytes")
            assert put.status_code == 200
            state: ServerState = app.state.tether
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
        app = create_app(settings)
        async with AsyncTestClient(app) as http:
            await signed_in(http)
            for _ in range(500):
                status = (await http.get(f"/api/v1/files/tasks/{task_id}")).json()["status"]
                if status in ("succeeded", "failed"):
                    break
                await asyncio.sleep(0.01)
            assert status == "succeeded"
            moved = await http.get("/api/v1/files/data/b/file.txt")
            assert moved.content == b"bytes"
            assert (await http.get("/api/v1/files/info/a")).status_code == 404
            state = app.state.tether
            async with state.engine.connect() as conn:
                left = await conn.execute(
                    sa.select(sa.func.count()).where(file_tasks.c.status != "succeeded")
                )
                return str(left.scalar())

    assert asyncio.run(main()) == "0"


def test_blobs_nobody_refers_to_are_collected(tmp_path: Path) -> None:
    from tether.server.files import collect_blobs

    settings = Settings.load(
        {"data": tmp_path, "admin_username": "admin", "admin_password": "admin-password"},
        environ={},
    )
    app = create_app(settings)

    async def main() -> None:
        async with AsyncTestClient(app) as http:
            token = (
                await http.post(
                    "/api/v1/auth/token",
                    json={
                        "grant_type": "password",
                        "username": "admin",
                        "password": "admin-password",
                        "organization": "main",
                    },
                )
            ).json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            one = (await http.put("/api/v1/files/data/one", content=b"same")).json()["sha256"]
            await http.put("/api/v1/files/data/two", content=b"same")
            lone = (await http.put("/api/v1/files/data/lone", content=b"lonely")).json()["sha256"]
            state: ServerState = app.state.tether
            for path in ("/one", "/lone"):
                task = (
                    await http.post("/api/v1/files/tasks", json={"op": "remove", "path": path})
                ).json()
                for _ in range(500):
                    if (await http.get(f"/api/v1/files/tasks/{task['id']}")).json()[
                        "status"
                    ] == "succeeded":
                        break
                    await asyncio.sleep(0.01)
            assert await collect_blobs(state, idle=3600) == 0
            assert state.blobs.exists(lone)
            assert await collect_blobs(state, idle=0) == 1
            assert not state.blobs.exists(lone)
            assert state.blobs.exists(one)
            assert (await http.get("/api/v1/files/data/two")).content == b"same"

    asyncio.run(main())
