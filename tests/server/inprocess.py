"""The real application run in-process (lifespan included), for tests that look at the
server's own state: its event bus, its database, its background jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from tether.server.app import create_app
from tether.server.settings import Settings
from tether.server.state import ServerState

BASE = "http://testserver"
ADMIN = {
    "grant_type": "password",
    "username": "admin",
    "password": "admin-password",
    "organization": "main",
}


def settings_for(data: Path) -> Settings:
    return Settings.load(
        {"data": data, "admin_username": "admin", "admin_password": "admin-password"}, environ={}
    )


@asynccontextmanager
async def signed_in(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, ServerState]]:
    """A fresh app on `settings` with its lifespan running, and an HTTP client signed in as its
    first admin. The app, its background jobs and the test share the test's event loop, so the
    test may use the server's engine and state while the app runs (a test client that ran the
    app in a thread of its own would bind the engine's pool to two loops)."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        token = (await http.post("/api/v1/auth/token", json=ADMIN)).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http, app.state.tether


async def task_end(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """Poll a file task until it has ended (or 5 s pass); its last state."""
    for _ in range(500):
        state: dict[str, Any] = (await http.get(f"/api/v1/files/tasks/{task_id}")).json()
        if state["status"] in ("succeeded", "failed"):
            return state
        await asyncio.sleep(0.01)
    return state
