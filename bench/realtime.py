"""Broadcast-to-all-and-collect-all latency through Tether's realtime socket, beside a bare
`websockets` server doing the same broadcast and acknowledgement (the limit), in one run.

    .venv/bin/python bench/realtime.py [--rounds 50] [--sizes 10,100,1000]

For N subscribers (one asyncio process of raw WebSocket clients that answer every broadcast at
once), a broadcaster asks for a broadcast and waits until all N answers are back; p50 and p99 of
that time over the rounds, and fan-out deliveries per second, for Tether (`tether serve`, one
worker), for the bare server (`websockets`, same frames, no auth, no checks; like Tether's
default, and Socket.IO's, without permessage-deflate) and for Node's
Socket.IO 4 (`io.to(room).timeout(t).emit(...)` collecting the acknowledgements; installed with
npm into a temporary folder, so it needs node and npm). The subscribers and the broadcaster are
the same Python code for all three, speaking each server's wire format (Socket.IO's is
engine.io v4 over a WebSocket: `42[...]` events, `43id[...]` acknowledgements). Prints ratios.
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
from typing import Any

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
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), max_size=2**22, compression=None):
        await asyncio.Future()

asyncio.run(main())
"""


SOCKET_IO = """
const { Server } = require("socket.io");
const options = { transports: ["websocket"], maxHttpBufferSize: 4e6 };
const io = new Server(Number(process.argv[2]), options);
io.on("connection", (socket) => {
  socket.on("subscribe", (room, ack) => { socket.join(room); ack("ok"); });
  socket.on("broadcast", (room, payload, ack) => {
    io.to(room).timeout(10000).emit("tick", payload, (err, responses) => ack(responses || []));
  });
});
"""


class Wire:
    """Tether's (and the bare server's) frames."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers

    async def subscribe(self, ws: Any) -> None:
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "channel": "bench"}))
        while json.loads(await ws.recv())["op"] != "ack":
            pass

    async def answer(self, ws: Any, text: str) -> None:
        frame = json.loads(text)
        if frame["op"] == "broadcast":
            await ws.send(
                json.dumps({"op": "respond", "broadcast": frame["broadcast"], "payload": 1})
            )

    async def broadcast(self, ws: Any, number: int) -> list[Any]:
        message = {
            "op": "broadcast",
            "id": number,
            "channel": "bench",
            "name": "tick",
            "timeout": 10,
        }
        await ws.send(json.dumps(message))
        while True:
            frame = json.loads(await ws.recv())
            if frame["op"] == "responses":
                return frame["responses"]  # type: ignore[no-any-return]


class SocketIOWire(Wire):
    """Socket.IO 4 over a WebSocket, spoken directly: open, connect, events with ack ids."""

    async def open(self, ws: Any) -> None:
        await ws.recv()  # engine.io open packet
        await ws.send("40")
        while not (await ws.recv()).startswith("40"):
            pass

    async def subscribe(self, ws: Any) -> None:
        await self.open(ws)
        await ws.send('420["subscribe","bench"]')
        while not (await ws.recv()).startswith("430"):
            pass

    async def answer(self, ws: Any, text: str) -> None:
        if text == "2":
            await ws.send("3")
        elif text.startswith("42"):
            ack_id = text[2 : text.index("[")]
            await ws.send(f"43{ack_id}[1]")

    async def broadcast(self, ws: Any, number: int) -> list[Any]:
        if number == 0:
            await self.open(ws)
        ack_id = number + 10
        await ws.send(f'42{ack_id}["broadcast","bench",null]')
        prefix = f"43{ack_id}"
        while True:
            text = await ws.recv()
            if text == "2":
                await ws.send("3")
            elif text.startswith(prefix):
                return json.loads(text[len(prefix) :])[0]  # type: ignore[no-any-return]


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


async def measure(wire: Wire, n: int, rounds: int) -> list[float]:
    ready = asyncio.Event()
    subscribed = 0
    stop = asyncio.Event()
    opening = asyncio.Semaphore(50)

    async def subscriber() -> None:
        nonlocal subscribed
        async with opening:
            ws = await connect(
                wire.url, additional_headers=wire.headers, max_size=2**22, open_timeout=120
            )
        async with ws:
            await wire.subscribe(ws)
            subscribed += 1
            if subscribed == n:
                ready.set()
            while not stop.is_set():
                try:
                    text = await asyncio.wait_for(ws.recv(), 1)
                except TimeoutError:
                    continue
                await wire.answer(ws, text)

    tasks = [asyncio.create_task(subscriber()) for _ in range(n)]
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait([waiting, *tasks], timeout=300, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        failed = [t.exception() for t in tasks if t.done()]
        raise SystemExit(f"{subscribed} of {n} subscribed; {failed[:1]}")
    print(f"    {n} subscribed", file=sys.stderr)
    times = []
    async with connect(wire.url, additional_headers=wire.headers, max_size=2**22) as caster:
        for r in range(rounds):
            started = time.perf_counter()
            try:
                responses = await wire.broadcast(caster, r)
            except Exception as exc:
                print(f"    round {r}: {exc!r}", file=sys.stderr)
                raise
            if len(responses) != n:
                print(f"    round {r}: {len(responses)} of {n} responses", file=sys.stderr)
                raise SystemExit(f"{len(responses)} of {n} responses")
            times.append(time.perf_counter() - started)
    stop.set()
    await asyncio.gather(*tasks)
    return times


def summary(times: list[float], n: int) -> tuple[float, float, float]:
    ordered = sorted(times)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 * 1000, p99 * 1000, n / p50


def start_socket_io(work: Path, port: int) -> subprocess.Popen[bytes]:
    if not (shutil.which("node") and shutil.which("npm")):
        raise SystemExit("node and npm are needed for the Socket.IO peer")
    subprocess.run(
        ["npm", "install", "--silent", "--no-audit", "--no-fund", "socket.io@4"],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (work / "sio.js").write_text(SOCKET_IO)
    process = subprocess.Popen(["node", str(work / "sio.js"), str(port)], cwd=work)
    wait_port(port)
    return process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tether-rt-"))
    tether_port, bare_port, sio_port = free_port(), free_port(), free_port()
    tether = start_tether(work, tether_port)
    (work / "bare.py").write_text(BARE)
    bare = subprocess.Popen([sys.executable, str(work / "bare.py"), str(bare_port)])
    sio = start_socket_io(work, sio_port)
    try:
        wait_port(bare_port)
        token = admin_token(f"http://127.0.0.1:{tether_port}")
        wires = {
            "tether": Wire(
                f"ws://127.0.0.1:{tether_port}/api/v1/realtime",
                {"Authorization": f"Bearer {token}"},
            ),
            "bare": Wire(f"ws://127.0.0.1:{bare_port}", {}),
            "socket.io": SocketIOWire(
                f"ws://127.0.0.1:{sio_port}/socket.io/?EIO=4&transport=websocket", {}
            ),
        }
        print(
            f"Python {sys.version.split()[0]}; {args.rounds} rounds; subscribers in one asyncio "
            "process; one tether serve worker; bare = websockets server, same frames; "
            "socket.io = Node "
            + subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        )
        print(
            f"{'N':>6}{'tether p50/p99 ms':>19}{'bare p50/p99':>15}{'socket.io p50/p99':>19}"
            f"{'vs bare':>9}{'vs sio':>8}{'tether deliveries/s':>21}"
        )
        for n in sizes:
            found = {
                name: summary(asyncio.run(measure(wire, n, args.rounds)), n)
                for name, wire in wires.items()
            }
            (t50, t99, rate), (b50, b99, _), (s50, s99, _) = found.values()
            print(
                f"{n:>6}{t50:>11.2f}/{t99:<7.2f}{b50:>8.2f}/{b99:<6.2f}{s50:>11.2f}/{s99:<7.2f}"
                f"{t50 / b50:>9.2f}{t50 / s50:>8.2f}{rate:>21,.0f}"
            )
    finally:
        for process in (tether, bare, sio):
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
