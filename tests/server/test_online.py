"""Online, defined once: a device seen (a request with its credentials, or an open socket) in
the last five minutes; shown on the device, filtered on the list, the same on every process."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path

from tests.server.inprocess import settings_for, signed_in
from tether.server.db.tables import resources
from tether.server.identity.seen import ONLINE_FOR


def test_a_device_is_online_once_seen_and_offline_five_minutes_after(tmp_path: Path) -> None:
    async def main() -> None:
        async with signed_in(settings_for(tmp_path)) as (http, state):
            made = (await http.post("/api/v1/devices", json={"name": "d"})).json()
            quiet = (await http.post("/api/v1/devices", json={"name": "quiet"})).json()
            assert (made["online"], made.get("seen_at")) == (False, None)
            basic = base64.b64encode(f"{made['id']}:{made['secret']}".encode()).decode()
            whoami = await http.get(
                "/api/v1/auth/whoami", headers={"Authorization": f"Basic {basic}"}
            )
            assert whoami.status_code == 200
            assert await state.seen.flush() == 1
            shown = (await http.get(f"/api/v1/devices/{made['id']}")).json()
            assert shown["online"] is True
            online = (await http.get("/api/v1/devices?online=true")).json()["results"]
            offline = (await http.get("/api/v1/devices?online=false")).json()["results"]
            assert [d["name"] for d in online] == ["d"]
            assert [d["name"] for d in offline] == ["quiet"]
            assert quiet["online"] is False
            long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ONLINE_FOR + 1)
            async with state.engine.begin() as conn:
                await conn.execute(
                    resources.update().where(resources.c.id == made["id"]).values(seen_at=long_ago)
                )
            shown = (await http.get(f"/api/v1/devices/{made['id']}")).json()
            assert shown["online"] is False
            assert (await http.get("/api/v1/devices?online=true")).json()["results"] == []
            bad = await http.get("/api/v1/devices?online=maybe")
            assert (bad.status_code, bad.json()["code"]) == (422, "invalid_parameter")

    asyncio.run(main())
