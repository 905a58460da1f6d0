"""Requests/s of device get-by-id and list-page-of-50 through Tether, beside a bare Litestar
endpoint on the same server returning the same JSON (the framework's own limit), and the bare
endpoint plus one `SELECT 1` (the ceiling of any endpoint that asks the database something).

    .venv/bin/python bench/rest.py [--seconds 5] [--connections 32] [--fleet 100000]

Needs `wrk` (apt-get install wrk). Starts its own server on a free loopback port (SQLite in a
temporary folder, or TETHER_DATABASE_URL), signs in, creates 50 devices, then runs wrk against
each endpoint pair in the same run and prints the ratios. Then it grows the fleet to `--fleet`
devices (rows written straight into the database) and measures the same list page again: a page
must cost what it holds, so that ratio should stay near 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from _common import ADMIN_PASSWORD, admin_token, free_port, grow_fleet
from litestar import get

from tether.server.app import create_app
from tether.server.db.reads import fetch
from tether.server.settings import Settings
from tether.server.state import Tether

_BARE: dict[str, Any] = {}


@get("/bench/bare-device", opt={"exclude_from_auth": True}, include_in_schema=False)
async def bare_device() -> dict[str, Any]:
    return _BARE["device"]  # type: ignore[no-any-return]


@get("/bench/bare-page", opt={"exclude_from_auth": True}, include_in_schema=False)
async def bare_page() -> dict[str, Any]:
    return _BARE["page"]  # type: ignore[no-any-return]


_ONE_ROUND_TRIP = sa.select(sa.literal(1))


@get("/bench/bare-query", opt={"exclude_from_auth": True}, include_in_schema=False)
async def bare_query(tether: Tether) -> dict[str, Any]:
    """The bare device endpoint plus one trivial query on the reader: the most any endpoint
    that asks the database something can reach."""
    async with tether.reader.connect() as reads:
        await fetch(reads, _ONE_ROUND_TRIP)
    return _BARE["device"]  # type: ignore[no-any-return]


def wrk(
    url: str, seconds: int, connections: int, token: str | None, script: str | None = None
) -> float:
    """Requests/s wrk reaches on `url` (`script`: a Lua file that shapes each request)."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url]
    if script:
        command[1:1] = ["-s", script]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} failed responses\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--fleet", type=int, default=100_000)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    port = free_port()
    data = tempfile.mkdtemp(prefix="tether-bench-")
    settings = Settings.load(
        {"data": data, "admin_password": ADMIN_PASSWORD, "port": port, "log_level": "warning"}
    )
    app = create_app(settings, extra_handlers=[bare_device, bare_page, bare_query])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}/api/v1"
    token = admin_token(f"http://127.0.0.1:{port}")
    headers = {"Authorization": f"Bearer {token}"}
    ids = [
        httpx.post(
            f"{base}/devices", json={"name": f"d{i}", "document": {"i": i}}, headers=headers
        ).json()["id"]
        for i in range(50)
    ]
    _BARE["device"] = httpx.get(f"{base}/devices/{ids[0]}", headers=headers).json()
    _BARE["page"] = httpx.get(f"{base}/devices?limit=50", headers=headers).json()
    db = settings.resolved_database_url.split(":")[0]
    print(
        f"database: {db}; wrk -t2 -c{args.connections} -d{args.seconds}s; Python "
        f"{sys.version.split()[0]}; one uvicorn worker in-process"
    )
    rows = []
    for label, path, bare in (
        ("device get-by-id", f"/devices/{ids[0]}", "/bench/bare-device"),
        ("list page of 50", "/devices?limit=50", "/bench/bare-page"),
    ):
        tether_rps = wrk(base + path, args.seconds, args.connections, token)
        bare_rps = wrk(base + bare, args.seconds, args.connections, None)
        rows.append((label, tether_rps, bare_rps))
    query_rps = wrk(base + "/bench/bare-query", args.seconds, args.connections, None)
    print(f"{'workload':<20}{'tether req/s':>14}{'bare req/s':>14}{'ratio':>8}")
    for label, t, b in rows:
        print(f"{label:<20}{t:>14.0f}{b:>14.0f}{t / b:>8.2f}")
    print(
        f"bare + one SELECT 1: {query_rps:.0f} req/s, {query_rps / rows[0][2]:.2f}x the bare "
        f"endpoint (the ceiling of any endpoint that queries); device get is "
        f"{rows[0][1] / query_rps:.2f}x of it"
    )
    print(json.dumps({label: round(t / b, 3) for label, t, b in rows}))
    asyncio.run(grow_fleet(settings.resolved_database_url, args.fleet - len(ids)))
    grown = wrk(base + "/devices?limit=50", args.seconds, args.connections, token)
    total = httpx.get(f"{base}/devices?limit=1", headers=headers).json()["total"]
    print(
        f"list page of 50 with {total} devices: {grown:.0f} req/s, "
        f"{grown / rows[1][1]:.2f}x the same page with 50 devices"
    )
    server.should_exit = True
    shutil.rmtree(data, ignore_errors=True)
    os._exit(0)


if __name__ == "__main__":
    main()
