"""Telemetry inside the server: pushes reach the event bus, retention deletes old points.

These drive the real application in-process (its lifespan included) because they look at the
server's own state: the event bus and the retention job.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from tests.server.inprocess import settings_for, signed_in
from tether.server.db.tables import telemetry_latest, telemetry_points
from tether.server.telemetry import retention as telemetry

T0 = 1_767_225_600.0


def test_pushes_are_published_and_retention_prunes(tmp_path: Path) -> None:
    async def main() -> None:
        async with signed_in(settings_for(tmp_path)) as (http, state):
            device = (await http.post("/api/v1/devices", json={"name": "d"})).json()
            async with state.bus.subscribe() as events:
                body = {
                    "batch": "one",
                    "entries": [
                        {"ts": T0, "values": {"t": 1.5, "s": "a"}},
                        {"ts": T0 + 1, "values": {"t": 2.5}},
                    ],
                }
                pushed = await http.post(f"/api/v1/devices/{device['id']}/telemetry", json=body)
                assert pushed.json() == {"batch": "one", "points": 3, "duplicate": False}
                event = await asyncio.wait_for(events.get(), 5)
                org = (await http.get("/api/v1/auth/whoami")).json()["organization"]["id"]
                assert (event.org_id, event.name, event.id) == (
                    org,
                    "telemetry:created",
                    device["id"],
                )
                assert event.document["points"] == 3
                assert event.document["latest"]["t"] == {"ts": T0 + 1, "value": 2.5}
                again = await http.post(f"/api/v1/devices/{device['id']}/telemetry", json=body)
                assert again.json()["duplicate"] is True
                assert events.empty()

            assert (
                await telemetry.prune(state.engine, dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
                == 0
            )
            assert (
                await telemetry.prune(
                    state.engine, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
                )
                == 3
            )
            async with state.engine.connect() as conn:
                points = (
                    await conn.execute(sa.select(sa.func.count()).select_from(telemetry_points))
                ).scalar()
                latest = (
                    await conn.execute(sa.select(sa.func.count()).select_from(telemetry_latest))
                ).scalar()
            assert (points, latest) == (0, 2)

    asyncio.run(main())
