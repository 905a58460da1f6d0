"""The console's device list page beside the JSON API's list of the same page, with a fleet of
100,000 devices, in one run: p50 and p99 of each, and the ratio, in creation order and sorted
by name. Goal: the page's p50 under 50 ms and within 1.5x the API's.

    .venv/bin/python bench/console.py [--fleet 100000] [--requests 300]

Starts `tether serve` on a free loopback port (SQLite in a temporary folder, or
TETHER_DATABASE_URL), grows the fleet straight into the database (each device running one of
three versions of a package, which the page's version filter counts), signs in to the console
through its form, then times `--requests` sequential GETs of each (keep-alive, one client, so
the figures are the server's time plus loopback), alternating the two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _common import ADMIN_PASSWORD, admin_token, free_port, grow_fleet, start_tether


def percentile(times: list[float], share: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fleet", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    port = free_port()
    database_url = os.environ.get("TETHER_DATABASE_URL")
    process = start_tether(work / "data", port, database_url)
    url = f"http://127.0.0.1:{port}"
    try:
        token = admin_token(url)
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        api.post("/api/v1/devices", json={"name": "first"}).raise_for_status()
        database = database_url or f"sqlite+aiosqlite:///{work / 'data' / 'tether.db'}"
        asyncio.run(
            grow_fleet(
                database.replace("postgresql://", "postgresql+asyncpg://"),
                args.fleet - 1,
                installed=True,
            )
        )
        console = httpx.Client(base_url=url)
        csrf = re.search(r'name="csrf" value="([^"]+)"', console.get("/sign-in").text)
        assert csrf is not None
        form = {
            "csrf": csrf[1],
            "organization": "main",
            "username": "admin",
            "password": ADMIN_PASSWORD,
        }
        assert console.post("/sign-in", data=form).status_code == 303
        timed: dict[str, list[float]] = {}
        for _ in range(args.requests):
            for name, client, path in (
                ("console page", console, "/devices"),
                ("JSON API list", api, "/api/v1/devices?limit=50"),
                ("page by name", console, "/devices?sort=name"),
                ("API by name", api, "/api/v1/devices?limit=50&sort=name"),
            ):
                started = time.perf_counter()
                answer = client.get(path)
                timed.setdefault(name, []).append(time.perf_counter() - started)
                answer.raise_for_status()
        assert "fleet-" in console.get("/devices").text
        assert "com.acme.player 1.0.0 (" in console.get("/devices").text
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.fleet:,} devices, {args.requests} sequential requests each, one page of 50")
    for name, times in timed.items():
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        mean = statistics.fmean(times) * 1000
        print(f"{name:>14}: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  mean {mean:6.1f} ms")
    for page, listed in (("console page", "JSON API list"), ("page by name", "API by name")):
        ratio = percentile(timed[page], 0.5) / percentile(timed[listed], 0.5)
        print(f"{page} / API at p50: {ratio:.2f} (goal: p50 under 50 ms and at most 1.5)")


if __name__ == "__main__":
    main()
