"""Memory per open realtime socket: a `tether serve` process holding N idle, signed-in,
subscribed WebSockets beside a bare `websockets` server holding N idle sockets (the limit of
any Python server on this stack), in one run; kB per socket and the ratio.

    .venv/bin/python bench/sockets.py [--sockets 2000]

Starts both servers on free loopback ports (Tether on SQLite in a temporary folder), reads each
server's resident memory (VmRSS) before and after one asyncio client opens the sockets, 100
at a time. Needs a file-descriptor limit above twice --sockets (ulimit -n).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import admin_token, free_port, start_tether
from websockets.asyncio.client import connect

BARE = """
import asyncio, sys
from websockets.asyncio.server import serve

async def handler(ws):
    async for _ in ws:
        pass

async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None):
        await asyncio.Future()

asyncio.run(main())
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")


async def hold(url: str, count: int, headers: dict[str, str], subscribe: bool) -> list[object]:
    """`count` open sockets to `url` (each subscribed to a channel when `subscribe`)."""
    sockets: list[object] = []
    for start in range(0, count, 100):

        async def one() -> object:
            ws = await connect(url, additional_headers=headers, compression=None)
            if subscribe:
                await ws.send(json.dumps({"op": "subscribe", "id": 1, "channel": "idle"}))
                await ws.recv()
            return ws

        sockets += await asyncio.gather(*(one() for _ in range(min(100, count - start))))
    return sockets


async def measure(pid: int, url: str, count: int, headers: dict[str, str], sub: bool) -> float:
    before = rss_kib(pid)
    sockets = await hold(url, count, headers, sub)
    await asyncio.sleep(1)
    after = rss_kib(pid)
    for ws in sockets:
        await ws.close()  # type: ignore[attr-defined]
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    tether_port, bare_port = free_port(), free_port()
    server = start_tether(work / "data", tether_port)
    bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{bare_port}")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        token = admin_token(f"http://127.0.0.1:{tether_port}")
        headers = {"Authorization": f"Bearer {token}"}
        tether_kib = asyncio.run(
            measure(
                server.pid,
                f"ws://127.0.0.1:{tether_port}/api/v1/realtime",
                args.sockets,
                headers,
                True,
            )
        )
        bare_kib = asyncio.run(
            measure(bare.pid, f"ws://127.0.0.1:{bare_port}", args.sockets, {}, False)
        )
    finally:
        server.terminate()
        bare.terminate()
        server.wait(30)
        bare.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.sockets} idle sockets, resident memory growth per socket")
    print(f"  Tether (signed in, subscribed): {tether_kib:6.1f} kB")
    print(f"  bare websockets server:         {bare_kib:6.1f} kB")
    print(f"  ratio: {tether_kib / bare_kib:.2f}")
    print(f"  sockets per GiB for Tether: {1024 * 1024 / tether_kib:,.0f}")


if __name__ == "__main__":
    main()
