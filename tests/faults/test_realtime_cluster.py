"""Two server processes sharing channels through Redis: a broadcast on one reaches 50
listeners split across both, each once, and every response comes back to the broadcaster."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import OPERATOR, RunningServer, free_port
from tests.faults.conftest import serve

pytestmark = pytest.mark.subprocess


async def next_frame(ws: Any, timeout: float = 30) -> dict[str, Any]:
    """The next frame that is not a presence notice (others join and leave all the time)."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["op"] != "presence":
            return frame


def test_a_broadcast_crosses_processes_and_every_response_returns(
    server: RunningServer, redis_url: str, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    data = tmp_path / "data"
    first = serve(ports[0], data, server.database_url, redis_url)
    second = serve(ports[1], data, server.database_url, redis_url)
    try:
        org, user, password = OPERATOR
        token = httpx.post(
            f"http://127.0.0.1:{ports[0]}/api/v1/auth/token",
            json={
                "grant_type": "password",
                "username": user,
                "password": password,
                "organization": org,
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        received: list[int] = [0] * 50

        async def listener(n: int, ready: asyncio.Event, subscribed: list[int]) -> None:
            url = f"ws://127.0.0.1:{ports[n % 2]}/api/v1/realtime"
            async with connect(url, additional_headers=headers) as ws:
                await ws.send(json.dumps({"op": "subscribe", "id": 1, "channel": "cluster"}))
                assert (await next_frame(ws))["op"] == "ack"
                subscribed.append(n)
                if len(subscribed) == 50:
                    ready.set()
                frame = await next_frame(ws)
                assert frame["op"] == "broadcast"
                received[n] += 1
                await ws.send(
                    json.dumps({"op": "respond", "broadcast": frame["broadcast"], "payload": n})
                )
                with pytest.raises(TimeoutError):
                    await next_frame(ws, 0.5)

        async def main() -> tuple[list[Any], float]:
            ready, subscribed = asyncio.Event(), []
            tasks = [asyncio.create_task(listener(n, ready, subscribed)) for n in range(50)]
            await asyncio.wait_for(ready.wait(), 60)
            async with connect(
                f"ws://127.0.0.1:{ports[0]}/api/v1/realtime", additional_headers=headers
            ) as caster:
                started = time.monotonic()
                await caster.send(
                    json.dumps(
                        {
                            "op": "broadcast",
                            "id": 7,
                            "channel": "cluster",
                            "name": "roll-call",
                            "timeout": 20,
                        }
                    )
                )
                reply = await next_frame(caster)
                elapsed = time.monotonic() - started
            await asyncio.gather(*tasks)
            return reply["responses"], elapsed

        responses, elapsed = asyncio.run(main())
        assert sorted(responses) == list(range(50))
        assert received == [1] * 50
        assert elapsed < 10, "the broadcast should end when everyone answered, not at its timeout"

        async def event_from_the_other_process() -> dict[str, Any]:
            url = f"ws://127.0.0.1:{ports[0]}/api/v1/realtime"
            async with connect(url, additional_headers=headers) as ws:
                await ws.send(json.dumps({"op": "events", "id": 1, "types": ["device:created"]}))
                assert (await next_frame(ws))["op"] == "ack"
                async with httpx.AsyncClient() as http:
                    created = await http.post(
                        f"http://127.0.0.1:{ports[1]}/api/v1/devices",
                        json={"name": "made-on-b"},
                        headers=headers,
                    )
                    assert created.status_code == 201, created.text
                return await next_frame(ws, 10)

        device = httpx.post(
            f"http://127.0.0.1:{ports[0]}/api/v1/devices", json={"name": "on-b"}, headers=headers
        ).json()

        async def presence_across_processes() -> list[dict[str, Any]]:
            pair = f"{device['id']}:{device['secret']}".encode()
            basic = "Basic " + base64.b64encode(pair).decode()
            async with connect(
                f"ws://127.0.0.1:{ports[1]}/api/v1/realtime",
                additional_headers={"Authorization": basic},
            ) as on_b:
                await on_b.send(json.dumps({"op": "subscribe", "id": 1, "channel": "hall"}))
                assert (await next_frame(on_b))["op"] == "ack"
                async with connect(
                    f"ws://127.0.0.1:{ports[0]}/api/v1/realtime", additional_headers=headers
                ) as on_a:
                    # Presence reaches the other process through Redis just after the ack.
                    deadline = time.monotonic() + 10
                    while True:
                        await on_a.send(json.dumps({"op": "who", "id": 2, "channel": "hall"}))
                        members: list[dict[str, Any]] = (await next_frame(on_a))["members"]
                        if members or time.monotonic() > deadline:
                            return members

        members = asyncio.run(presence_across_processes())
        assert [(m["type"], m["name"]) for m in members] == [("device", "on-b")]

        event = asyncio.run(event_from_the_other_process())
        assert (event["op"], event["type"], event["document"]["name"]) == (
            "event",
            "device",
            "made-on-b",
        )

        hall = f"hall-{os.getpid()}-{time.monotonic_ns()}"

        async def member_of_a_dying_process() -> list[dict[str, Any]]:
            b_url = f"ws://127.0.0.1:{ports[1]}/api/v1/realtime"
            on_b = await connect(b_url, additional_headers=headers)
            await on_b.send(json.dumps({"op": "subscribe", "id": 1, "channel": hall}))
            assert (await next_frame(on_b))["op"] == "ack"
            second.kill()
            second.wait(30)
            url = f"ws://127.0.0.1:{ports[0]}/api/v1/realtime"
            async with connect(url, additional_headers=headers) as on_a:
                deadline = time.monotonic() + 30
                while True:
                    await on_a.send(json.dumps({"op": "who", "id": 2, "channel": hall}))
                    members: list[dict[str, Any]] = (await next_frame(on_a))["members"]
                    if not members or time.monotonic() > deadline:
                        return members
                    await asyncio.sleep(0.2)

        assert asyncio.run(member_of_a_dying_process()) == []
        import redis

        stored = redis.Redis.from_url(redis_url).keys(f"tether:rt:presence:*{hall}*")
        assert stored == [], "the dead process's member stays in the shared list"
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(30)
