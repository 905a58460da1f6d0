"""Channels, listeners, broadcasts with responses and event callbacks through the SDK, in both
flavours, against the real server."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import tether
from tests.conftest import RunningServer, Tenant, wait_for


def test_broadcast_listen_respond(tenant: Tenant) -> None:
    with tenant.client() as caster, tenant.client() as player:
        assert not player.is_connected
        listener = player.get_channel("lobby").listen("hello", timeout=10)
        assert player.is_connected
        assert listener.wait(timeout=0) is None

        def answer() -> None:
            got = listener.wait(timeout=10)
            assert got is not None
            assert got.payload == {"n": 1}
            got.respond({"from": "player"})

        worker = threading.Thread(target=answer)
        worker.start()
        responses = caster.get_channel("lobby").broadcast("hello", {"n": 1}, timeout=10)
        worker.join(10)
        assert responses == [{"from": "player"}]
        assert caster.get_channel("lobby", system=True).broadcast("hello", timeout=0.2) == []
        assert caster.get_channel("lobby").broadcast("other-name", timeout=0.2) == []
        assert listener.wait(timeout=0) is None
        caster.get_channel("lobby").fling({"url": "https://example.com"})
        caster.get_channel("lobby").broadcast("hello", 2, timeout=0)
        caster.get_channel("lobby").broadcast("hello", 3, timeout=0)
        got = [listener.wait(timeout=10), listener.wait(timeout=10)]
        assert [b.payload for b in got if b] == [2, 3]
        listener.cancel()
        assert caster.get_channel("lobby").broadcast("hello", timeout=0.2) == []


def test_old_broadcasts_are_dropped(tenant: Tenant) -> None:
    with tenant.client() as caster, tenant.client() as player:
        listener = player.get_channel("c").listen("tick", max_age=0)
        caster.get_channel("c").broadcast("tick", 1, timeout=0)
        time_sent = time.time()
        wait_for(lambda: time.time() > time_sent + 0.01, what="the broadcast to age")
        assert listener.wait(timeout=0.5) is None


def test_event_callbacks_and_errors(tenant: Tenant, server: RunningServer) -> None:
    seen: list[dict[str, Any]] = []
    with tenant.client() as watcher, tenant.client() as admin:
        watcher.on("device:created", seen.append)
        device = admin.devices.create("new one")
        wait_for(lambda: bool(seen), timeout=10, what="the event")
        assert (seen[0]["type"], seen[0]["id"]) == ("device", device.id)
        token = admin.post("tokens", {"name": "ro", "read_only": True})["token"]
    with tether.Client(server.url, token=token) as read_only:
        with pytest.raises(tether.RealtimeError) as caught:
            read_only.get_channel("c").broadcast("x")
        assert caught.value.code == "read_only"
        assert read_only.get_channel("c").listen("x") is not None
    with pytest.raises(tether.ClientClosedError):
        read_only.get_channel("c")
    offline = tether.Client(server.url, token=token, enable_network=False)
    with pytest.raises(tether.ConfigurationError):
        offline.get_channel("c").broadcast("x")
    offline.close()


def test_async_twin(tenant: Tenant) -> None:
    async def main() -> None:
        async with tenant.async_client() as caster, tenant.async_client() as player:
            listener = await player.get_channel("lobby").listen("hello")

            async def answer() -> None:
                async for broadcast in listener:
                    await broadcast.respond(broadcast.payload * 2)
                    return

            task = asyncio.create_task(answer())
            assert await caster.get_channel("lobby").broadcast("hello", 21, timeout=10) == [42]
            await task
            await listener.cancel()

    asyncio.run(main())


def test_presence(tenant: Tenant, server: RunningServer) -> None:
    changes: list[tuple[str, str]] = []
    with tenant.client() as watcher, tenant.client() as admin:
        device = admin.post("devices", {"name": "kiosk-7"})
        watching = watcher.get_channel("hall").on_presence(
            lambda change, member: changes.append((change, member["name"]))
        )
        with tether.Client(
            server.url, device_id=device["id"], device_secret=device["secret"]
        ) as kiosk:
            kiosk.get_channel("hall").listen("ping")
            wait_for(lambda: ("joined", "kiosk-7") in changes, timeout=10, what="the join")
            members = watcher.get_channel("hall").members()
            assert {(m["type"], m["name"]) for m in members} == {
                ("user", "admin"),
                ("device", "kiosk-7"),
            }
        wait_for(lambda: ("left", "kiosk-7") in changes, timeout=10, what="the leave")
        assert [m["type"] for m in watcher.get_channel("hall").members()] == ["user"]
        watching.cancel()


def test_event_streams_and_resource_channels(tenant: Tenant) -> None:
    with tenant.client() as watcher, tenant.client() as admin:
        stream = watcher.listen_events("device:*")
        device = admin.devices.create("streamed")
        event = stream.wait(timeout=10)
        assert event is not None
        assert (event["action"], event["id"]) == ("created", device.id)
        admin.devices.delete(device.id)
        assert next(iter(stream))["action"] == "deleted"
        thing = admin.things.create("lamp")
        listener = watcher.things.get(thing.id).get_channel().listen("on")
        assert thing.get_channel().broadcast("on", timeout=0) == []
        assert listener.wait(timeout=10) is not None


def test_objects_moving_in_a_location_or_project(tenant: Tenant) -> None:
    in_location: list[dict[str, Any]] = []
    in_project: list[dict[str, Any]] = []
    with tenant.client() as watcher, tenant.client() as admin:
        project = admin.projects.create("fleet")
        hq = admin.post(f"projects/{project.id}/locations", {"name": "HQ"})
        elsewhere = admin.locations.create("elsewhere")
        watcher.locations.get(hq["id"]).on_move(in_location.append)
        watcher.projects.get(project.id).on_move(in_project.append)
        made = admin.post(
            f"projects/{project.id}/devices",
            {"name": "van", "location_id": hq["id"], "document": {"latitude": 1.5, "longitude": 2}},
        )
        admin.patch(f"devices/{made['id']}", {"document": {"latitude": 1.6, "longitude": 2.1}})
        other = admin.things.create("crate", location_id=elsewhere.id)
        admin.patch(f"things/{other.id}", {"document": {"latitude": 9.0, "longitude": 9.0}})
        admin.patch(f"devices/{made['id']}", {"document": {"note": "no position"}})
        admin.patch(f"devices/{made['id']}", {"document": {"latitude": 1.7, "longitude": 2.2}})
        wait_for(lambda: len(in_location) == 3 and len(in_project) == 3, 10, "three moves each")
    expected = [(1.5, 2), (1.6, 2.1), (1.7, 2.2)]
    for seen in (in_location, in_project):
        assert [(f["document"]["latitude"], f["document"]["longitude"]) for f in seen] == expected
        assert {(f["action"], f["id"], f["document"]["kind"]) for f in seen} == {
            ("moved", made["id"], "device")
        }


def test_project_credentials_use_their_project_realtime(
    tenant: Tenant, server: RunningServer
) -> None:
    """Project tokens, devices and apps connect (to their project's socket, as the rest of the
    API serves them inside their project), and a project's channels are its own: the
    organization's sockets of the same channel name do not hear them."""
    with tenant.client() as admin:
        project = admin.projects.create("rt")
        token = admin.post("tokens", {"name": "p", "project_id": project.id})["token"]
        device = admin.post(f"projects/{project.id}/devices", {"name": "pd"})
        app = admin.post(f"projects/{project.id}/apps", {"name": "pa"})
        with (
            tether.Client(server.url, token=token) as by_token,
            tether.Client(
                server.url, device_id=device["id"], device_secret=device["secret"]
            ) as by_device,
            tether.Client(server.url, app_id=app["id"], api_key=app["secret"]) as by_app,
        ):
            heard = [c.get_channel("room").listen("hi", timeout=10) for c in (by_device, by_app)]
            org_wide = admin.get_channel("room").listen("hi", timeout=10)
            answers = []

            def answer(listener: Any, who: str) -> None:
                got = listener.wait(timeout=10)
                assert got is not None
                got.respond(who)

            workers = [
                threading.Thread(target=answer, args=(listener, who))
                for listener, who in zip(heard, ("device", "app"), strict=True)
            ]
            for worker in workers:
                worker.start()
            answers = by_token.get_channel("room").broadcast("hi", timeout=10)
            for worker in workers:
                worker.join(10)
            assert sorted(answers) == ["app", "device"]
            assert org_wide.wait(timeout=0.3) is None
            assert admin.get_channel("room").broadcast("hi", timeout=0.3) == []
