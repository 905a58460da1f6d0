"""The realtime socket against the real server: channels, broadcast-and-collect, the tenant
wall, read-only tokens, bad frames and resource events."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import RunningServer, Tenant


@asynccontextmanager
async def socket(server: RunningServer, token: str) -> AsyncIterator[ClientConnection]:
    url = server.url.replace("http://", "ws://") + "/api/v1/realtime"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        yield ws


async def send(ws: ClientConnection, **frame: Any) -> None:
    await ws.send(json.dumps(frame))


async def receive(ws: ClientConnection, op: str | None = None) -> dict[str, Any]:
    """The next frame (of kind `op`), passing over presence notices unless asked for them."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if (op is None and frame["op"] != "presence") or frame["op"] == op:
            return frame  # type: ignore[no-any-return]


async def drain(ws: ClientConnection) -> None:
    """Read until the connection closes (or 10 s pass without a frame)."""
    while True:
        await asyncio.wait_for(ws.recv(), 10)


def closed_by(url: str, token: str, action: Any) -> tuple[int | None, float]:
    """Open a subscribed socket at `url` with `token`, run `action()`, and wait for the server
    to close the socket: its close code and how many seconds after `action` returned."""

    async def main() -> tuple[int | None, float]:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await send(ws, op="subscribe", id=1, channel="c")
            assert (await receive(ws))["op"] == "ack"
            await asyncio.to_thread(action)
            done = time.monotonic()
            with pytest.raises(ConnectionClosed):
                await drain(ws)
            return ws.close_code, time.monotonic() - done

    return asyncio.run(main())


def token_of(tenant: Tenant, **kwargs: Any) -> str:
    with tenant.client() as c:
        if kwargs:
            return str(c.post("tokens", {"name": "t", **kwargs})["token"])
        return c.get_auth().token


def test_broadcast_reaches_subscribers_and_collects_responses(
    server: RunningServer, tenant: Tenant, make_tenant: Any
) -> None:
    mine, other = token_of(tenant), token_of(make_tenant())

    async def main() -> None:
        async with (
            socket(server, mine) as caster,
            socket(server, mine) as one,
            socket(server, mine) as two,
            socket(server, other) as stranger,
        ):
            for n, ws in enumerate((one, two, stranger)):
                await send(ws, op="subscribe", id=n, channel="lobby")
                assert (await receive(ws)) == {"op": "ack", "id": n}
            await send(
                caster,
                op="broadcast",
                id=9,
                channel="lobby",
                name="ping",
                payload={"n": 1},
                timeout=5,
            )
            for ws, answer in ((one, "one"), (two, "two")):
                got = await receive(ws, "broadcast")
                assert (got["channel"], got["name"], got["payload"]) == ("lobby", "ping", {"n": 1})
                await send(ws, op="respond", broadcast=got["broadcast"], payload=answer)
            done = await receive(caster, "responses")
            assert done["id"] == 9
            assert sorted(done["responses"]) == ["one", "two"]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stranger.recv(), 0.3)
            await send(caster, op="broadcast", id=10, channel="empty", name="x", timeout=5)
            assert (await receive(caster, "responses"))["responses"] == []
            await send(one, op="subscribe", id=11, channel="lobby", system=True)
            await receive(one, "ack")
            await send(
                caster, op="broadcast", id=12, channel="lobby", name="y", system=True, timeout=0.2
            )
            got = await receive(one, "broadcast")
            assert got["system"] is True
            assert (await receive(caster, "responses"))["responses"] == []

    asyncio.run(main())


def test_only_a_socket_a_broadcast_reached_may_answer_it_once(
    server: RunningServer, tenant: Tenant
) -> None:
    mine = token_of(tenant)
    with tenant.client() as admin:
        device = admin.post("devices", {"name": "forger"})
        me = admin.get("auth/whoami")["id"]
    forger_token = _device_token(server, device)

    async def main() -> None:
        async with (
            socket(server, mine) as caster,
            socket(server, mine) as listener,
            socket(server, forger_token) as forger,
        ):
            await send(listener, op="subscribe", id=1, channel=f"device.{device['id']}")
            await receive(listener, "ack")
            ids = []
            for n in (2, 3):
                channel = f"device.{device['id']}"
                await send(caster, op="broadcast", id=n, channel=channel, name="q", timeout=0.5)
                got = await receive(listener, "broadcast")
                ids.append(got["broadcast"])
                assert got["timeout"] == 0.5
                await send(forger, op="respond", broadcast=got["broadcast"], payload="forged")
                refused = await receive(forger)
                assert (refused["op"], refused["code"]) == ("error", "not_asked")
                if n == 2:
                    await send(listener, op="respond", broadcast=got["broadcast"], payload="real")
                    await send(listener, op="respond", broadcast=got["broadcast"], payload="again")
                    assert (await receive(listener, "error"))["code"] == "not_asked"
                done = await receive(caster, "responses")
                if n == 2:
                    assert done["responses"] == ["real"]
                    assert done["answers"] == [
                        {"from": {"type": "user", "id": me, "name": "admin"}, "payload": "real"}
                    ]
                else:
                    assert done["responses"] == []
                    assert done["answers"] == []
            node_a, secret_a = ids[0].split(".")
            node_b, secret_b = ids[1].split(".")
            assert node_a == node_b
            assert len(secret_a) >= 16
            assert secret_a != secret_b

    asyncio.run(main())


def _device_token(server: RunningServer, device: dict[str, Any]) -> str:
    import httpx

    grant = {"grant_type": "device", "device_id": device["id"], "device_secret": device["secret"]}
    answer = httpx.post(f"{server.url}/api/v1/auth/token", json=grant)
    return str(answer.json()["access_token"])


def test_bad_frames_and_read_only_tokens_get_error_frames(
    server: RunningServer, tenant: Tenant
) -> None:
    read_only = token_of(tenant, read_only=True)

    async def main() -> None:
        async with socket(server, read_only) as ws:
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers, "compression is opt-in"
            await send(ws, op="broadcast", id=1, channel="c", name="n")
            error = await receive(ws)
            assert (error["op"], error["code"], error["id"]) == ("error", "read_only", 1)
            await ws.send("{not json")
            assert (await receive(ws))["code"] == "malformed"
            await ws.send(b'{"op": "who", "id": 5, "channel": "c"}')
            assert (await receive(ws))["code"] == "malformed", "frames are text, not binary"
            await ws.send(json.dumps({"op": "subscribe", "id": 2, "channel": "x" * 300}))
            assert (await receive(ws))["code"] == "invalid"
            await ws.send("x" * 70_000)
            assert (await receive(ws))["code"] == "too_large"
            await send(ws, op="dance", id=3)
            assert (await receive(ws))["code"] == "unknown_op"
            await send(ws, op="subscribe", id=4, channel="still-works")
            assert (await receive(ws)) == {"op": "ack", "id": 4}

    asyncio.run(main())


def test_resource_events_reach_who_asked(
    server: RunningServer, tenant: Tenant, make_tenant: Any
) -> None:
    mine, other = token_of(tenant), token_of(make_tenant())

    async def main() -> None:
        async with socket(server, mine) as ws, socket(server, other) as stranger:
            await send(ws, op="events", id=1, types=["device:*"])
            await receive(ws, "ack")
            await send(stranger, op="events", id=1, types=["*"])
            await receive(stranger, "ack")
            with tenant.client() as c:
                device = await asyncio.to_thread(c.devices.create, "watched")
            event = await receive(ws, "event")
            assert (event["type"], event["action"], event["id"]) == ("device", "created", device.id)
            assert event["document"]["name"] == "watched"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stranger.recv(), 0.3)

    asyncio.run(main())


def test_a_socket_without_credentials_is_refused(server: RunningServer) -> None:
    async def main() -> None:
        url = server.url.replace("http://", "ws://") + "/api/v1/realtime"
        with pytest.raises(
            (websockets.exceptions.InvalidStatus, websockets.exceptions.ConnectionClosed)
        ):
            async with connect(url) as ws:
                await ws.recv()

    asyncio.run(main())


def test_presence_changes_go_only_to_sockets_that_asked(
    server: RunningServer, tenant: Tenant
) -> None:
    token = token_of(tenant)

    async def main() -> None:
        async with socket(server, token) as plain, socket(server, token) as watcher:
            await send(plain, op="subscribe", id=1, channel="hall")
            assert (await receive(plain, "ack"))["id"] == 1
            await send(watcher, op="subscribe", id=2, channel="hall", presence=True)
            assert (await receive(watcher, "ack"))["id"] == 2
            async with socket(server, token) as newcomer:
                await send(newcomer, op="subscribe", id=3, channel="hall")
                assert (await receive(newcomer, "ack"))["id"] == 3
                joined = await receive(watcher, "presence")
                assert joined["joined"]["type"] == "user"
            left = await receive(watcher, "presence")
            assert "left" in left
            await send(plain, op="who", id=4, channel="hall")
            answer = json.loads(await asyncio.wait_for(plain.recv(), 10))
            assert answer["op"] == "members", "a plain subscriber was sent presence changes"

    asyncio.run(main())


def test_a_consumer_that_stops_reading_is_disconnected_not_waited_for(
    server: RunningServer, tenant: Tenant
) -> None:
    token = token_of(tenant)
    payload = base64.b64encode(os.urandom(45_000)).decode()  # permessage-deflate can't shrink it

    async def main() -> None:
        async with socket(server, token) as slow, socket(server, token) as caster:
            await send(slow, op="subscribe", id=1, channel="firehose")
            assert (await receive(slow, "ack"))["id"] == 1
            slow.transport.pause_reading()  # stops reading; the server's queue for it fills
            for n in range(1500):
                await send(
                    caster,
                    op="broadcast",
                    id=n,
                    channel="firehose",
                    name="x",
                    payload=payload,
                    timeout=0,
                )
                reply = await receive(caster)
                assert reply["op"] == "responses"
            started = time.monotonic()
            await send(caster, op="broadcast", id=-1, channel="firehose", name="x", timeout=0)
            assert (await receive(caster))["op"] == "responses"
            assert time.monotonic() - started < 2, "a stuck consumer slowed the broadcaster"
            slow.transport.resume_reading()
            with pytest.raises(ConnectionClosed) as closed:
                await drain(slow)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4008

    asyncio.run(main())


def test_a_project_socket_needs_a_project_of_the_callers_organization(
    server: RunningServer, tenant: Tenant, make_tenant: Any
) -> None:
    with make_tenant().client() as other:
        theirs = other.projects.create("theirs").id
    mine = token_of(tenant)
    base = server.url.replace("http://", "ws://") + "/api/v1/projects"

    async def refused(url: str) -> int:
        header = {"Authorization": f"Bearer {mine}"}
        with pytest.raises(websockets.exceptions.InvalidStatus) as caught:
            async with connect(url, additional_headers=header):
                pass
        return caught.value.response.status_code

    # Refused before the handshake completes: the server answers 403 whatever the reason.
    assert asyncio.run(refused(f"{base}/{theirs}/realtime")) == 403
    assert asyncio.run(refused(f"{base}/nope/realtime")) == 403
