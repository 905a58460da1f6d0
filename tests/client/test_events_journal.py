"""The journal of recent events on both back ends: what changed, newest first, each event shown
only to who may hear it, no secrets, telemetry left out, old events forgotten."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from pathlib import Path
from typing import Any

import httpx

import tether
from tests.conftest import RunningServer, wait_for
from tests.server.inprocess import settings_for, signed_in
from tether.server.db.engine import first_id_at, new_id, utcnow
from tether.server.db.tables import events
from tether.server.realtime import journal


def recent(client: tether.Client, path: str = "events", **query: Any) -> list[tuple[str, str]]:
    page = client.get(path, {"limit": 100, **query})
    return [(e["type"] + ":" + e["action"], e["object_id"]) for e in page["results"]]


def test_the_journal_tells_what_changed_to_who_may_know(
    server: RunningServer, client: tether.Client, make_tenant: Any
) -> None:
    device = client.post("devices", {"name": "d", "document": {"a": 1}})
    thing = client.things.create("t")
    client.patch(f"devices/{device['id']}", {"document": {"a": 2}})
    with tether.Client(server.url, device_id=device["id"], device_secret=device["secret"]) as dc:
        dc.telemetry.add_value("temperature", 21.5)
        dc.telemetry.commit_and_push()
        client.updates.publish("app", "1.0", ("app.bin", io.BytesIO(b"x")))
        client.updates.deploy("app", "1.0")
        dc.updates.report("app", "1.0", "installed", "all good")
        expected = [
            ("report:created", device["id"]),
            ("deployment:created", None),
            ("package:created", None),
            ("device:updated", device["id"]),
            ("thing:created", thing.id),
            ("device:created", device["id"]),
        ]

        def shapes() -> list[tuple[str, str | None]]:
            return [
                (name, object_id if object_id in (device["id"], thing.id) else None)
                for name, object_id in recent(client)
            ]

        wait_for(lambda: shapes() == expected, 10, "the journal")
        page = client.get("events", {"limit": 100})
        assert all("secret" not in str(e["document"]) for e in page["results"])
        report = page["results"][0]
        assert report["device_id"] == device["id"]
        assert report["document"]["state"] == "installed"
        assert report["document"]["reason"] == "all good"

        assert recent(client, device_id=device["id"]) == [
            ("report:created", device["id"]),
            ("device:updated", device["id"]),
            ("device:created", device["id"]),
        ]
        assert recent(client, type="thing") == [("thing:created", thing.id)]
        own = recent(dc)
        assert own == recent(client, device_id=device["id"])
        assert recent(dc, device_id=thing.id) == own

    walked = []
    listed = client.get("events", {"limit": 2})
    while True:
        walked += [e["id"] for e in listed["results"]]
        if not listed["next"]:
            break
        listed = client.get(listed["next"].removeprefix("/api/v1/"))
    assert walked == [e["id"] for e in page["results"]]

    with make_tenant().client() as stranger:
        assert recent(stranger) == []
        assert recent(stranger, device_id=device["id"]) == []

    project = client.projects.create("p")
    inside = client.post(f"projects/{project.id}/things", {"name": "inside"})
    token = client.post("tokens", {"name": "p only", "project_id": project.id})["token"]
    with tether.Client(server.url, token=token) as scoped:
        wait_for(lambda: ("thing:created", inside["id"]) in recent(client), 10, "a new event")
        in_project = [("thing:created", inside["id"]), ("project:created", project.id)]
        assert recent(scoped, path=f"projects/{project.id}/events") == in_project
    assert recent(client, path=f"projects/{project.id}/events") == in_project


def test_old_events_are_forgotten(tmp_path: Path) -> None:
    async def main() -> None:
        async with signed_in(settings_for(tmp_path)) as (http, state):
            org = (await http.get("/api/v1/auth/whoami")).json()["organization"]["id"]
            long_ago = utcnow() - dt.timedelta(days=31)
            old = {
                "org_id": org,
                "at": long_ago,
                "type": "thing",
                "action": "created",
                "object_id": "x",
                "device_id": None,
                "document": None,
            }
            async with state.engine.begin() as conn:
                await conn.execute(events.delete())
                await conn.execute(events.insert(), [old | {"id": first_id_at(long_ago)}])
                await conn.execute(events.insert(), [old | {"id": new_id(), "at": utcnow()}])
            assert await journal.prune(state) == 1
            listed = (await http.get("/api/v1/events")).json()
            assert [e["object_id"] for e in listed["results"]] == ["x"]
            assert listed["results"][0]["at"] > long_ago.isoformat()

    asyncio.run(main())


def test_the_total_counts_only_events_the_caller_may_hear(tmp_path: Path) -> None:
    """An app may not read apps, so app events are neither shown to it nor counted: a total
    that counted them told an app how much happened that it may not see."""

    async def main() -> None:
        async with signed_in(settings_for(tmp_path)) as (http, state):
            org = (await http.get("/api/v1/auth/whoami")).json()["organization"]["id"]
            app = (await http.post("/api/v1/apps", json={"name": "kiosk"})).json()
            await wait_for_async(lambda: _journal_has(http, "app"))
            hidden = [
                {
                    "id": new_id(),
                    "org_id": org,
                    "at": utcnow(),
                    "type": "app",
                    "action": "created",
                    "object_id": f"a{n}",
                    "device_id": None,
                    "project_id": None,
                    "document": None,
                }
                for n in range(5)
            ]
            shown = hidden[0] | {"id": new_id(), "type": "thing", "object_id": "t"}
            async with state.engine.begin() as conn:
                await conn.execute(events.insert(), [*hidden, shown])
            as_app = httpx.BasicAuth(app["id"], app["secret"])
            del http.headers["Authorization"]
            listed = (await http.get("/api/v1/events", auth=as_app)).json()
            assert [e["object_id"] for e in listed["results"]] == ["t"]
            assert listed["total"] == 1
            one = (await http.get("/api/v1/events", params={"limit": 1}, auth=as_app)).json()
            assert one["total"] == 1
            assert one["next"] is None

    asyncio.run(main())


async def _journal_has(http: httpx.AsyncClient, type: str) -> bool:
    listed = (await http.get("/api/v1/events", params={"type": type})).json()
    return bool(listed["results"])


async def wait_for_async(condition: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "the journal wrote nothing"
        await asyncio.sleep(0.02)
