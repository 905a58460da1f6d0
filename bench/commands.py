"""Commands beside broadcasts on the same `tether serve`, in one run.

    .venv/bin/python bench/commands.py [--devices 1000] [--rounds 100] [--database-url URL]

Devices are simulated as in `bench/realtime.py`: raw WebSocket clients in one asyncio process,
here each with its own device credentials, taking its commands on its socket (it acknowledges
and answers each at once) and subscribed to a channel (it answers each broadcast at once).

1. queued → delivered for one online device (the server's own `created_at` to `delivered_at`)
   beside one broadcast round trip to one subscriber (goal: p50 within 1.5 times).
2. A device reconnecting with 100 pending commands: time from its `commands` frame to the
   100th command received (goal: under 100 ms), beside the same 100 fetched in one HTTP GET.
3. One command to every device until its aggregate is complete (all succeeded, seen by a
   long poll of the group) beside a broadcast-and-collect to the same devices (goal: 1.5 times).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import admin_token, free_port, start_tether
from websockets.asyncio.client import connect


def basic(device: dict[str, Any]) -> dict[str, str]:
    raw = f"{device['id']}:{device['secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


class Device:
    """A simulated device: answers commands and broadcasts on its one socket."""

    def __init__(self, url: str, device: dict[str, Any]) -> None:
        self.url, self.device = url, device
        self.received: list[float] = []
        self.ws: Any = None
        self.expect = 0
        self.all_in = asyncio.Event()

    async def open(self, take_commands: bool = True) -> None:
        self.ws = await connect(self.url, additional_headers=basic(self.device), max_size=2**22)
        await self.ws.send(json.dumps({"op": "subscribe", "id": 1, "channel": "bench"}))
        if take_commands:
            await self.ws.send(json.dumps({"op": "commands", "id": 2}))

    async def run(self) -> None:
        ws, n = self.ws, 10
        async for text in ws:
            frame = json.loads(text)
            if frame["op"] == "command":
                self.received.append(time.perf_counter())
                if len(self.received) == self.expect:
                    self.all_in.set()
                command = frame["command"]["id"]
                n += 2
                await ws.send(json.dumps({"op": "command_ack", "id": n, "command": command}))
                answer = {"op": "command_result", "id": n + 1, "command": command}
                await ws.send(json.dumps(answer | {"state": "succeeded", "result": 1}))
            elif frame["op"] == "broadcast":
                await ws.send(
                    json.dumps({"op": "respond", "broadcast": frame["broadcast"], "payload": 1})
                )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def broadcast_round(caster: Any, number: int, expected: int) -> float:
    started = time.perf_counter()
    await caster.send(
        json.dumps(
            {"op": "broadcast", "id": number, "channel": "bench", "name": "t", "timeout": 30}
        )
    )
    while True:
        frame = json.loads(await caster.recv())
        if frame["op"] == "responses":
            assert len(frame["responses"]) == expected, len(frame["responses"])
            return time.perf_counter() - started


async def main(devices_n: int, rounds: int, database_url: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="tether-commands-"))
    port = free_port()
    process = start_tether(work, port, database_url)
    base = f"http://127.0.0.1:{port}"
    ws_url = f"ws://127.0.0.1:{port}/api/v1/realtime"
    try:
        token = admin_token(base)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"{base}/api/v1", headers=headers) as http:
            made = [
                (await http.post("devices", json={"name": f"d{n}"})).json()
                for n in range(devices_n + 1)
            ]
            lone, fleet = made[0], made[1:]
            async with connect(ws_url, additional_headers=headers) as caster:
                # 1. one online device
                device = Device(ws_url, lone)
                await device.open()
                runner = asyncio.create_task(device.run())
                await asyncio.sleep(0.2)
                broadcast = [await broadcast_round(caster, r, 1) for r in range(rounds)]
                delivered = []
                for _ in range(rounds):
                    sent = await http.post(f"devices/{lone['id']}/commands", json={"name": "x"})
                    command = (
                        await http.get(f"commands/{sent.json()['id']}", params={"wait": 10})
                    ).json()
                    created = dt.datetime.fromisoformat(command["created_at"])
                    reached = dt.datetime.fromisoformat(command["delivered_at"])
                    delivered.append((reached - created).total_seconds())
                runner.cancel()
                await device.ws.close()
                b50, d50 = statistics.median(broadcast), statistics.median(delivered)
                print(
                    f"1. queued→delivered p50 {d50 * 1000:.2f} ms (p99 "
                    f"{percentile(delivered, 0.99) * 1000:.2f}); broadcast round trip to one "
                    f"subscriber p50 {b50 * 1000:.2f} ms; ratio {d50 / b50:.2f} (goal ≤ 1.5)"
                )

                # 2. a reconnecting device with 100 pending
                for n in range(100):
                    await http.post(
                        f"devices/{lone['id']}/commands", json={"name": "p", "payload": n}
                    )
                started = time.perf_counter()
                listing = await http.get(
                    f"devices/{lone['id']}/commands", params={"state": "open", "limit": 100}
                )
                fetched = time.perf_counter() - started
                assert len(listing.json()["results"]) == 100
                device = Device(ws_url, lone)
                device.ws = await connect(ws_url, additional_headers=basic(lone))
                device.expect = 100
                runner = asyncio.create_task(device.run())
                started = time.perf_counter()
                await device.ws.send(json.dumps({"op": "commands", "id": 2}))
                await asyncio.wait_for(device.all_in.wait(), 30)
                took = device.received[-1] - started
                runner.cancel()
                await device.ws.close()
                print(
                    f"2. 100 pending on reconnect: all in {took * 1000:.1f} ms (goal < 100); "
                    f"the same 100 in one HTTP GET: {fetched * 1000:.1f} ms; ratio "
                    f"{took / fetched:.2f}"
                )

                # 3. one command to the fleet
                sims = [Device(ws_url, d) for d in fleet]
                opening = asyncio.Semaphore(50)

                async def opened(sim: Device) -> None:
                    async with opening:
                        await sim.open()

                await asyncio.gather(*(opened(s) for s in sims))
                runners = [asyncio.create_task(s.run()) for s in sims]
                await asyncio.sleep(1.0)
                collect = [await broadcast_round(caster, 1000 + r, devices_n) for r in range(5)]
                aggregate = []
                ids = [d["id"] for d in fleet]
                for _ in range(5):
                    started = time.perf_counter()
                    group = (
                        await http.post("commands", json={"name": "all", "device_ids": ids})
                    ).json()
                    while not group["done"]:
                        group = (
                            await http.get(f"commands/groups/{group['id']}", params={"wait": 30})
                        ).json()
                    aggregate.append(time.perf_counter() - started)
                    assert group["counts"] == {"succeeded": devices_n}, group["counts"]
                for r in runners:
                    r.cancel()
                await asyncio.gather(*(s.ws.close() for s in sims))
                c50, a50 = statistics.median(collect), statistics.median(aggregate)
                print(
                    f"3. one command to {devices_n} devices, complete aggregate p50 "
                    f"{a50 * 1000:.0f} ms; broadcast-and-collect to the same {devices_n} p50 "
                    f"{c50 * 1000:.0f} ms; ratio {a50 / c50:.2f} (goal ≤ 1.5)"
                )
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--database-url", help="PostgreSQL (an empty database); default SQLite")
    args = parser.parse_args()
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"Python {sys.version.split()[0]}; one tether serve worker on {backend}; loopback")
    asyncio.run(main(args.devices, args.rounds, args.database_url))
