"""Broadcast-to-all-and-collect-all latency through Tether's realtime socket, beside a bare
`websockets` server doing the same broadcast and acknowledgement (the limit), in one run.

    .venv/bin/python bench/realtime.py [--rounds 50] [--sizes 10,100,1000]

For N subscribers (one asyncio process of raw WebSocket clients that answer every broadcast at
once), a broadcaster asks for a broadcast and waits until all N answers are back; p50 and p99 of
that time over the rounds, and fan-out deliveries per second, for Tether (`tether serve`, one
worker) and for the bare server (`websockets`, same frames, no auth, no checks). Prints ratios.
Node's Socket.IO is not in this run yet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import admin_token, free_port, start_tether
from websockets.asyncio.client import connect

BARE = """
import asyncio, json, sys
from websockets.asyncio.server import serve

channels = {}
pending = {}

async def handler(ws):
    try:
        await serve_one(ws)
    finally:
        for members in channels.values():
            members.discard(ws)

async def serve_one(ws):
    async for text in ws:
        frame = json.loads(text)
        op = frame["op"]
        if op == "subscribe":
            channels.setdefault(frame["channel"], set()).add(ws)
            await ws.send(json.dumps({"op": "ack", "id": frame["id"]}))
        elif op == "respond":
            entry = pending.get(frame["broadcast"])
            if entry:
                entry[0].append(frame["payload"])
                if len(entry[0]) >= entry[1]:
                    entry[2].set()
        elif op == "broadcast":
            members = channels.get(frame["channel"], set())
            bid = str(id(frame)) + str(len(pending))
            done = asyncio.Event()
            pending[bid] = ([], len(members), done)
            out = json.dumps({"op": "broadcast", "channel": frame["channel"], "name": frame["name"],
                              "payload": frame.get("payload"), "broadcast": bid})
            for member in members:
                await member.send(out)
            try:
                await asyncio.wait_for(done.wait(), frame.get("timeout", 10))
            except TimeoutError:
                pass
            responses = pending.pop(bid)[0]
            reply = {"op": "responses", "id": frame["id"], "responses": responses}
            await ws.send(json.dumps(reply))

async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), max_size=2**22):
        await asyncio.Future()

asyncio.run(main())
"""


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


async def measure(url: str, headers: dict[str, str], n: int, rounds: int) -> list[float]:
    ready = asyncio.Event()
    subscribed = 0
    stop = asyncio.Event()

    async def subscriber() -> None:
        nonlocal subscribed
        async with connect(url, additional_headers=headers, max_size=2**22) as ws:
            await ws.send(json.dumps({"op": "subscribe", "id": 1, "channel": "bench"}))
            while json.loads(await ws.recv())["op"] != "ack":
                pass
            subscribed += 1
            if subscribed == n:
                ready.set()
            while not stop.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 1))
                except TimeoutError:
                    continue
                if frame["op"] == "broadcast":
                    await ws.send(
                        json.dumps({"op": "respond", "broadcast": frame["broadcast"], "payload": 1})
                    )

    tasks = [asyncio.create_task(subscriber()) for _ in range(n)]
    await asyncio.wait_for(ready.wait(), 120)
    times = []
    async with connect(url, additional_headers=headers) as caster:
        for r in range(rounds):
            started = time.perf_counter()
            await caster.send(
                json.dumps(
                    {"op": "broadcast", "id": r, "channel": "bench", "name": "tick", "timeout": 10}
                )
            )
            while True:
                frame = json.loads(await caster.recv())
                if frame["op"] == "responses":
                    break
            if len(frame["responses"]) != n:
                raise SystemExit(f"{len(frame['responses'])} of {n} responses")
            times.append(time.perf_counter() - started)
    stop.set()
    await asyncio.gather(*tasks)
    return times


def summary(times: list[float], n: int) -> tuple[float, float, float]:
    ordered = sorted(times)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 * 1000, p99 * 1000, n / p50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tether-rt-"))
    tether_port, bare_port = free_port(), free_port()
    tether = start_tether(work, tether_port)
    (work / "bare.py").write_text(BARE)
    bare = subprocess.Popen([sys.executable, str(work / "bare.py"), str(bare_port)])
    try:
        wait_port(bare_port)
        token = admin_token(f"http://127.0.0.1:{tether_port}")
        print(
            f"Python {sys.version.split()[0]}; {args.rounds} rounds; subscribers in one "
            "asyncio process; one tether serve worker; bare = websockets server, same frames"
        )
        print(
            f"{'N':>6}{'tether p50 ms':>15}{'p99':>9}{'bare p50 ms':>13}{'p99':>9}"
            f"{'p50 ratio':>11}{'tether deliveries/s':>21}"
        )
        for n in sizes:
            ours = asyncio.run(
                measure(
                    f"ws://127.0.0.1:{tether_port}/api/v1/realtime",
                    {"Authorization": f"Bearer {token}"},
                    n,
                    args.rounds,
                )
            )
            theirs = asyncio.run(measure(f"ws://127.0.0.1:{bare_port}", {}, n, args.rounds))
            t50, t99, rate = summary(ours, n)
            b50, b99, _ = summary(theirs, n)
            ratio = t50 / b50
            print(
                f"{n:>6}{t50:>15.2f}{t99:>9.2f}{b50:>13.2f}{b99:>9.2f}{ratio:>11.2f}{rate:>21,.0f}"
            )
    finally:
        for process in (tether, bare):
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
