"""Realtime across nodes with a Redis that is down at start, comes up, and restarts: the
nodes serve, say they are degraded and why, refuse broadcasts at once, and recover by
themselves (presence included) once Redis answers again."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import OPERATOR, RunningServer, free_port, wait_for
from tests.faults.conftest import serve
from tests.server.test_realtime import receive

pytestmark = pytest.mark.subprocess


class OwnRedis:
    """A redis-server of this test's own, on a free port, that the test stops and starts."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
            except redis.RedisError:
                return False

        wait_for(answers, timeout=10, what="redis-server")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    folder = tmp_path / "redis"
    folder.mkdir()
    redis = OwnRedis(folder)
    try:
        yield redis
    finally:
        redis.stop()


def health(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/api/v1/health").json()  # type: ignore[no-any-return]


async def broadcast(ws: ClientConnection, n: int) -> tuple[dict[str, Any], float]:
    """A broadcast on channel `c` asking for answers; the reply frame and how long it took."""
    began = time.monotonic()
    message = {"op": "broadcast", "id": n, "channel": "c", "name": "roll", "timeout": 5}
    await ws.send(json.dumps(message))
    return await receive(ws), time.monotonic() - began


def test_realtime_survives_redis_down_at_start_and_restarted(
    server: RunningServer, own_redis: OwnRedis, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    data = tmp_path / "data"
    nodes = [serve(ports[0], data, server.database_url, own_redis.url)]
    try:
        state = health(urls[0])
        assert state["status"] == "degraded"
        assert "Redis" in state["problems"]["realtime"]
        org, user, password = OPERATOR
        grant = {"grant_type": "password", "username": user, "password": password}
        token = httpx.post(
            f"{urls[0]}/api/v1/auth/token", json=grant | {"organization": org}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def socket(node: int) -> Any:
            url = urls[node].replace("http://", "ws://") + "/api/v1/realtime"
            return connect(url, additional_headers=headers)

        async def answer(ws: ClientConnection) -> None:
            """A listener on channel `c` that answers every broadcast with "here"."""
            while True:
                got = json.loads(await ws.recv())
                if got["op"] == "broadcast":
                    reply = {"op": "respond", "broadcast": got["broadcast"], "payload": "here"}
                    await ws.send(json.dumps(reply))

        async def main() -> None:
            async with socket(0) as caster:
                refused, took = await broadcast(caster, 1)
                assert refused["op"] == "error", refused
                assert refused["code"] == "unavailable", refused
                assert "Redis" in refused["message"]
                assert took < 3, f"a broadcast without Redis took {took:.1f} s"

                await asyncio.to_thread(own_redis.start)
                await asyncio.to_thread(
                    wait_for, lambda: health(urls[0])["status"] == "ok", 20, "reconnection"
                )
                nodes.append(
                    await asyncio.to_thread(
                        serve, ports[1], data, server.database_url, own_redis.url
                    )
                )
                await asyncio.to_thread(
                    wait_for, lambda: health(urls[1])["status"] == "ok", 20, "second node"
                )
                async with socket(1) as listener:
                    await listener.send(json.dumps({"op": "subscribe", "id": 1, "channel": "c"}))
                    assert (await receive(listener))["op"] == "ack"
                    answering = asyncio.create_task(answer(listener))
                    replied, _ = await broadcast(caster, 2)
                    assert replied["responses"] == ["here"], replied

                    await asyncio.to_thread(own_redis.stop)
                    await asyncio.to_thread(
                        wait_for,
                        lambda: health(urls[0])["status"] == "degraded",
                        20,
                        "the lost Redis to show",
                    )
                    refused, took = await broadcast(caster, 3)
                    assert refused["code"] == "unavailable", refused
                    assert took < 3, f"a broadcast without Redis took {took:.1f} s"

                    await asyncio.to_thread(own_redis.start)
                    for url in urls:
                        await asyncio.to_thread(
                            wait_for, lambda u=url: health(u)["status"] == "ok", 20, "recovery"
                        )
                    await caster.send(json.dumps({"op": "who", "id": 4, "channel": "c"}))
                    members = (await receive(caster))["members"]
                    assert [m["type"] for m in members] == ["user"], (
                        "the listener on the other node is in the channel again"
                    )
                    replied, _ = await broadcast(caster, 5)
                    assert replied["responses"] == ["here"], replied
                    answering.cancel()

        asyncio.run(main())
    finally:
        for process in nodes:
            process.kill()
            process.wait(30)


SOCKETS = 2000


def test_thousands_of_subscriptions_cost_no_redis_connection_each(
    server: RunningServer, own_redis: OwnRedis, tmp_path: Path
) -> None:
    """5,000 subscriptions across 2,000 sockets on one process, and one socket flooding
    `subscribe`: Redis keeps a handful of connections from the process, health stays ok,
    every socket gets a broadcast and its answer comes back, and after they all close
    realtime still works."""
    import redis

    own_redis.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = serve(port, tmp_path / "data", server.database_url, own_redis.url)
    probe = redis.Redis.from_url(own_redis.url)
    try:
        wait_for(lambda: health(url)["status"] == "ok", 20, "the node to reach Redis")
        org, user, password = OPERATOR
        grant = {"grant_type": "password", "username": user, "password": password}
        token = httpx.post(f"{url}/api/v1/auth/token", json=grant | {"organization": org}).json()[
            "access_token"
        ]
        headers = {"Authorization": f"Bearer {token}"}
        realtime = url.replace("http://", "ws://") + "/api/v1/realtime"

        async def subscribed(n: int) -> ClientConnection:
            ws = await connect(realtime, additional_headers=headers, max_queue=None)
            channels = ["all", f"own.{n}"] + (["half"] if n % 2 == 0 else [])
            for i, channel in enumerate(channels):
                await ws.send(json.dumps({"op": "subscribe", "id": i, "channel": channel}))
            for _ in channels:
                assert (await receive(ws))["op"] == "ack"
            return ws

        async def answer_once(ws: ClientConnection, n: int) -> None:
            got = await receive(ws, "broadcast")
            reply = {"op": "respond", "broadcast": got["broadcast"], "payload": n}
            await ws.send(json.dumps(reply))

        async def main() -> None:
            sockets: list[ClientConnection] = []
            for start in range(0, SOCKETS, 200):
                sockets += await asyncio.gather(*(subscribed(n) for n in range(start, start + 200)))
            async with connect(realtime, additional_headers=headers) as flood:
                for i in range(300):
                    await flood.send(json.dumps({"op": "subscribe", "id": i, "channel": f"f{i}"}))
                replies = [await receive(flood) for _ in range(300)]
                assert [r["op"] for r in replies].count("ack") == 100
                assert {r["code"] for r in replies if r["op"] == "error"} == {"too_many_channels"}

                state = await asyncio.to_thread(health, url)
                assert state["status"] == "ok", state
                held = len(probe.client_list()) - 1
                assert held <= 16, f"the process holds {held} Redis connections"

                answering = [
                    asyncio.create_task(answer_once(ws, n)) for n, ws in enumerate(sockets)
                ]
                message = {"op": "broadcast", "id": "all", "channel": "all", "name": "roll"}
                await flood.send(json.dumps(message | {"timeout": 20}))
                done = await asyncio.wait_for(receive(flood, "responses"), 30)
                await asyncio.gather(*answering)
                assert sorted(done["responses"]) == list(range(SOCKETS))

                await flood.send(json.dumps({"op": "who", "id": "who", "channel": "half"}))
                members = (await receive(flood, "members"))["members"]
                assert [m["type"] for m in members] == ["user"]
                (half,) = probe.keys('tether:rt:presence:*"half"*')
                assert probe.hlen(half) == SOCKETS // 2, "every subscription reached Redis"

                await asyncio.gather(*(ws.close() for ws in sockets))
                await asyncio.to_thread(
                    wait_for, lambda: health(url)["status"] == "ok", 20, "health after the close"
                )
                async with connect(realtime, additional_headers=headers) as listener:
                    await listener.send(json.dumps({"op": "subscribe", "id": 1, "channel": "c"}))
                    assert (await receive(listener))["op"] == "ack"
                    answering = [asyncio.create_task(answer_once(listener, 7))]
                    replied, took = await broadcast(flood, 2)
                    assert replied["responses"] == [7], replied
                    assert took < 3

        asyncio.run(main())
    finally:
        node.kill()
        node.wait(30)
