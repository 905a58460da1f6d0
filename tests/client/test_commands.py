"""Commands end to end against the real server, on both back ends: a device online gets each
one at once, an offline one everything pending when it comes back, handlers run once and in
order, answers and their states are truthful, and the walls hold. The socket protocol is also
spoken by hand with the `websockets` library, a client nobody on the team wrote."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

import tether
from tests.conftest import RunningServer, Tenant, wait_for


def device_client(tenant: Tenant, device: tether.Device, tmp_path: Path) -> tether.Client:
    assert device.secret is not None
    return tether.Client(tenant.url, device_id=device.id, device_secret=device.secret)


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "device.db"
    monkeypatch.setenv("TETHER_OUTBOX", str(path))
    return path


def test_an_online_device_runs_a_command_at_once_and_its_sender_sees_the_answer(
    tenant: Tenant, inbox: Path, tmp_path: Path
) -> None:
    ran: list[Any] = []
    with tenant.client() as people:
        device = people.devices.create("kiosk")
        with device_client(tenant, device, tmp_path) as dc:

            @dc.commands.on("add")
            def add(command: tether.ReceivedCommand) -> int:
                ran.append(command.payload)
                command.progress({"step": 1})
                return int(command.payload["a"]) + int(command.payload["b"])

            dc.commands.start()
            sent = people.commands.send(device, "add", {"a": 2, "b": 3}, timeout=30)
            done = sent.wait(timeout=30)
            assert (done.state, done.result, done.error) == ("succeeded", 5, None)
            assert done.progress == {"step": 1}
            for stamp in ("sent_at", "delivered_at", "started_at", "finished_at", "answered_at"):
                assert done.data[stamp] is not None, stamp
            assert ran == [{"a": 2, "b": 3}]
            assert [c.id for c in people.commands.list(device=device)] == [sent.id]


def test_failures_and_rejections_are_answers_too(
    tenant: Tenant, inbox: Path, tmp_path: Path
) -> None:
    with tenant.client() as people:
        device = people.devices.create("d")
        with device_client(tenant, device, tmp_path) as dc:
            dc.commands.on("boom", lambda command: 1 / 0)
            dc.commands.on("no", lambda command: command.reject("not while driving"))
            dc.commands.start()
            boom = people.commands.send(device, "boom").wait(30)
            no = people.commands.send(device, "no").wait(30)
            unknown = people.commands.send(device, "nobody-handles-this").wait(30)
    assert (boom.state, boom.error) == ("failed", "ZeroDivisionError: division by zero")
    assert (no.state, no.error) == ("rejected", "not while driving")
    assert unknown.state == "failed"
    assert "no handler for 'nobody-handles-this'" in str(unknown.error)


def test_an_offline_device_gets_everything_pending_in_order_when_it_comes_back(
    tenant: Tenant, inbox: Path, tmp_path: Path
) -> None:
    order: list[int] = []
    with tenant.client() as people:
        device = people.devices.create("away")
        sent = [people.commands.send(device, "step", n) for n in range(20)]
        assert {c.refresh().state for c in sent} == {"queued"}
        with device_client(tenant, device, tmp_path) as dc:
            dc.commands.on("step", lambda command: order.append(command.payload))
            dc.commands.start()
            for command in sent:
                assert command.wait(30).state == "succeeded"
    assert order == list(range(20))


def test_a_device_without_a_socket_polls_over_http(
    tenant: Tenant, inbox: Path, tmp_path: Path
) -> None:
    with tenant.client() as people:
        device = people.devices.create("sleepy")
        first = people.commands.send(device, "read", "temperature")
        second = people.commands.send(device, "read", "humidity")
        with device_client(tenant, device, tmp_path) as dc:
            dc.commands.on("read", lambda command: {"sensor": command.payload, "value": 21})
            assert dc.commands.poll() == 2
            assert dc.commands.poll() == 0
            assert not dc.is_connected
        assert first.refresh().result == {"sensor": "temperature", "value": 21}
        assert second.refresh().state == "succeeded"


def test_a_handler_runs_once_however_often_the_command_arrives(
    tenant: Tenant, inbox: Path, tmp_path: Path, server: RunningServer
) -> None:
    runs: list[str] = []
    with tenant.client() as people:
        device = people.devices.create("d")
        command = people.commands.send(device, "once")
        with device_client(tenant, device, tmp_path) as dc:
            dc.commands.on("once", lambda c: runs.append(c.id))
            assert dc.commands.poll() == 1
            copy = {"id": command.id, "name": "once", "payload": None, "timeout": 30}
            dc.commands._received(copy)
            assert dc.commands.poll() == 0
            dc.commands.start()
            dc.commands._received(copy)
            wait_for(lambda: not dc.commands._copies, 10, "the copy to be acknowledged")
        assert command.refresh().state == "succeeded"
    assert runs == [command.id]


def test_a_handler_past_its_timeout_does_not_hold_up_the_next_and_its_late_answer_counts(
    tenant: Tenant, inbox: Path, tmp_path: Path
) -> None:
    release = threading.Event()
    with tenant.client() as people:
        device = people.devices.create("slow")
        slow = people.commands.send(device, "slow", timeout=1)
        quick = people.commands.send(device, "quick", timeout=30)
        with device_client(tenant, device, tmp_path) as dc:
            dc.commands.on("slow", lambda c: release.wait(30) and "late")
            dc.commands.on("quick", lambda c: "quick")
            dc.commands.start()
            assert quick.wait(30).state == "succeeded"
            assert slow.wait(30).state == "timed_out"
            assert slow.result is None
            release.set()
            wait_for(lambda: slow.refresh().data["answered_at"] is not None, 30, "the late answer")
    assert (slow.state, slow.result) == ("timed_out", "late")


def test_ttl_cancel_idempotency_and_resend(tenant: Tenant) -> None:
    with tenant.client() as people:
        device = people.devices.create("never-online")
        brief = people.commands.send(device, "x", ttl=0.5)
        assert brief.wait(30).state == "expired"
        kept = people.commands.send(device, "x", idempotency_key="order-7")
        again = people.commands.send(device, "x", idempotency_key="order-7")
        assert again.id == kept.id
        assert kept.cancel().state == "canceled"
        with pytest.raises(tether.ConflictError):
            kept.cancel()
        fresh = kept.resend()
        assert (fresh.state, fresh.name, fresh.id != kept.id) == ("queued", "x", True)
        with pytest.raises(tether.CommandTimeoutError) as waited:
            fresh.wait(timeout=0.2)
        assert waited.value.command.state == "queued"
        assert [c.id for c in people.commands.list(state="canceled")] == [kept.id]
        assert {c.id for c in people.commands.list(state="open")} == {fresh.id}


def test_one_command_to_many_devices_by_filter_with_a_live_aggregate(
    tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tenant.client() as people:
        lobby = people.locations.create("lobby")
        devices = [people.devices.create(f"d{n}", location_id=lobby.id) for n in range(4)]
        people.devices.create("elsewhere")
        clients = []
        for n, device in enumerate(devices):
            monkeypatch.setenv("TETHER_OUTBOX", str(tmp_path / f"d{n}.db"))
            dc = device_client(tenant, device, tmp_path)
            dc.commands.on("ping", lambda c: "pong")
            dc.commands.inbox()
            clients.append(dc)
        try:
            group = people.commands.send_many("ping", where={"location_id": lobby.id})
            assert group.total == 4
            for dc in clients:
                dc.commands.start()
            seen = [dict(g.counts) for g in group.watch(timeout=30)]
            assert group.done
            assert group.counts == {"succeeded": 4}
            assert seen[-1] == {"succeeded": 4}
            results = group.commands()
            assert sorted(c.device_id for c in results) == sorted(d.id for d in devices)
            assert {c.result for c in results} == {"pong"}
        finally:
            for dc in clients:
                dc.close()
        with pytest.raises(tether.BadRequestError, match="Unknown device filter"):
            people.commands.send_many("ping", where={"locaton_id": lobby.id})


def test_the_walls_between_devices_people_and_tenants(
    tenant: Tenant, make_tenant: Any, inbox: Path, tmp_path: Path
) -> None:
    with tenant.client() as people:
        mine, other = people.devices.create("mine"), people.devices.create("other")
        theirs = people.commands.send(other, "x")
        viewer_password = "viewer-password-1"
        people.post("users", {"username": "viewer", "password": viewer_password, "role": "viewer"})
        with device_client(tenant, mine, tmp_path) as dc:
            with pytest.raises(tether.PermissionDeniedError):
                dc.commands.send(other, "x")
            with pytest.raises(tether.NotFoundError):
                dc.commands.get(theirs.id)
            with pytest.raises(tether.NotFoundError):
                dc.post(f"commands/{theirs.id}/ack")
            assert dc.commands.list() == []
        with tether.Client(
            tenant.url,
            username="viewer",
            password=viewer_password,
            organization=tenant.organization,
        ) as viewer:
            assert viewer.commands.get(theirs.id).state == "queued"
            with pytest.raises(tether.PermissionDeniedError):
                viewer.commands.send(other, "x")
        with make_tenant().client() as stranger:
            with pytest.raises(tether.NotFoundError):
                stranger.commands.get(theirs.id)
            with pytest.raises(tether.NotFoundError):
                stranger.commands.send(other.id, "x")
        with pytest.raises(tether.BadRequestError, match="at most 65536"):
            people.commands.send(other, "x", "a" * 70_000)


def test_the_socket_protocol_spoken_with_the_websockets_library(tenant: Tenant) -> None:
    with tenant.client() as people:
        device = people.devices.create("raw")
        queued = people.commands.send(device, "blink", {"times": 3})
        url = tenant.url.replace("http", "ws") + "/api/v1/realtime"
        auth = httpx.BasicAuth(device.id, str(device.secret))
        header = auth._auth_header  # the header value httpx would send: Basic base64(id:secret)

        async def speak() -> list[dict[str, Any]]:
            frames = []
            async with websockets.connect(url, additional_headers={"Authorization": header}) as ws:
                await ws.send(json.dumps({"op": "commands", "id": 1}))
                frames.append(json.loads(await ws.recv()))
                frames.append(json.loads(await ws.recv()))
                await ws.send(json.dumps({"op": "command_ack", "id": 2, "command": queued.id}))
                frames.append(json.loads(await ws.recv()))
                result = {"op": "command_result", "id": 3, "command": queued.id}
                await ws.send(json.dumps(result | {"state": "succeeded", "result": "ok"}))
                frames.append(json.loads(await ws.recv()))
            return frames

        got = asyncio.run(speak())
        assert queued.refresh().result == "ok"
    by_op = {frame["op"]: frame for frame in got if frame["op"] == "command"}
    assert by_op["command"]["command"]["payload"] == {"times": 3}
    acks = [frame for frame in got if frame["op"] == "ack"]
    assert [a["id"] for a in acks] == [1, 2, 3]
    assert acks[1]["command"]["state"] == "delivered"
    assert acks[2]["command"]["state"] == "succeeded"


@pytest.mark.anyio
async def test_the_async_twin_runs_async_handlers(
    tenant: Tenant, inbox: Path, tmp_path: Path
) -> None:
    async with tenant.async_client() as people:
        device = await people.devices.create("async")
        assert device.secret is not None
        async with tether.AsyncClient(
            tenant.url, device_id=device.id, device_secret=device.secret
        ) as dc:

            async def double(command: tether.ReceivedCommand) -> int:
                await command.progress("halfway")
                await asyncio.sleep(0)
                return 2 * int(command.payload)

            dc.commands.on("double", double)
            await dc.commands.start()
            started = time.monotonic()
            command = await (await people.commands.send(device, "double", 21)).wait(30)
            assert (command.state, command.result) == ("succeeded", 42)
            assert time.monotonic() - started < 30
