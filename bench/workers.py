"""Several workers on one machine: REST get-by-id requests/s and telemetry ingest points/s with
`tether serve --workers 1` beside `--workers 2` (and more, with --workers), in one run, on
PostgreSQL and Redis; the ratio to one worker, and the machine's cores (the physical limit of
what more processes can add, with wrk, PostgreSQL and Redis on the same cores).

    .venv/bin/python bench/workers.py [--workers 1 2] [--seconds 5] [--connections 64]

Needs wrk (apt-get install wrk), PostgreSQL at 127.0.0.1:5432 (trust auth; a fresh database
per run) and Redis at 127.0.0.1:6379. Ingest is 100 points a push (10 entries of 10 fields),
each push with a batch id and times of its own, from 32 devices in turn, posted by wrk through a
Lua script.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import admin_token, drop_database, free_port, fresh_database, start_tether

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/9"
DEVICES = 32
"""Devices pushing, each push from one of them in turn (one device's pushes serialize on its
latest values)."""

PUSH = r"""
local counter = 0
local threads = 0
local prefix = ""

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local devices = {}

function init(args)
  devices = args
  prefix = tostring(id) .. "-" .. tostring(os.time())
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local ts = 1767225600 + id * 10000000 + counter
  local parts = {}
  for e = 0, 9 do
    parts[#parts + 1] = string.format(
      '{"ts":%d.%03d,"values":{"f0":%d,"f1":1,"f2":2,"f3":3,"f4":4,"f5":5,"f6":6,"f7":7,"f8":8,"f9":9}}',
      ts, e, e)
  end
  local body = '{"batch":"' .. prefix .. "-" .. counter .. '","entries":[' ..
    table.concat(parts, ",") .. ']}'
  local device = devices[counter % #devices + 1]
  return wrk.format("POST", "/api/v1/devices/" .. device .. "/telemetry", nil, body)
end
"""


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of every core so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


BUSY: list[float] = []
"""The machine's busy share during each wrk run, in order."""
SHARES: list[dict[str, float]] = []
"""Cores used by each kind of process during each wrk run, in order."""


def process_jiffies() -> dict[str, int]:
    """CPU jiffies used so far by Tether's processes, PostgreSQL's, Redis's and wrk's."""
    used: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        name = head.split("(", 1)[1]
        if name.startswith("postgres"):
            kind = "postgres"
        elif name.startswith("redis"):
            kind = "redis"
        elif name == "wrk":
            kind = "wrk"
        elif b"spawn_main" in cmdline or b"tether" in cmdline:
            kind = "tether"
        else:
            continue
        fields = tail.split()
        used[kind] = used.get(kind, 0) + int(fields[11]) + int(fields[12])
    return used


def wrk(
    url: str,
    seconds: int,
    connections: int,
    token: str,
    script: str | None = None,
    args: tuple[str, ...] = (),
) -> float:
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "-H",
        f"Authorization: Bearer {token}",
    ]
    if script:
        command += ["-s", script]
    busy, total = cpu_times()
    before = process_jiffies()
    started = time.monotonic()
    command = [*command, url, *(["--", *args] if args else [])]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - started
    after = process_jiffies()
    busy_after, total_after = cpu_times()
    BUSY.append((busy_after - busy) / max(1, total_after - total))
    tick = os.sysconf("SC_CLK_TCK")
    SHARES.append({k: (v - before.get(k, 0)) / tick / elapsed for k, v in after.items()})
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if failed:
        raise SystemExit(f"{url}: {failed.group(1)} failed responses\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]


def measure(workers: int, seconds: int, connections: int, script: str) -> tuple[float, float]:
    database = fresh_database(PG_ADMIN)
    work = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    port = free_port()
    process = start_tether(work / "data", port, database, redis_url=REDIS, workers=str(workers))
    try:
        url = f"http://127.0.0.1:{port}"
        token = admin_token(url)
        headers = {"Authorization": f"Bearer {token}"}
        devices = [
            httpx.post(f"{url}/api/v1/devices", json={"name": f"d{n}"}, headers=headers).json()
            for n in range(DEVICES)
        ]
        get_rps = wrk(f"{url}/api/v1/devices/{devices[0]['id']}", seconds, connections, token)
        ids = tuple(d["id"] for d in devices)
        push_rps = wrk(f"{url}/api/v1/devices", seconds, connections, token, script, ids)
        return get_rps, push_rps * 100
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)
        drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(PUSH)
    print(
        f"{os.cpu_count()} cores; wrk -t2 -c{args.connections} -d{args.seconds}s; "
        "PostgreSQL and Redis on the same machine"
    )
    results = {n: measure(n, args.seconds, args.connections, lua.name) for n in args.workers}
    base_get, base_push = results[args.workers[0]]
    print(
        f"{'workers':>7} {'get req/s':>10} {'ratio':>6} {'cpu':>5} "
        f"{'points/s':>10} {'ratio':>6} {'cpu':>5}"
    )
    for index, (n, (get_rps, points)) in enumerate(results.items()):
        get_busy, push_busy = BUSY[2 * index], BUSY[2 * index + 1]
        print(
            f"{n:>7} {get_rps:>10,.0f} {get_rps / base_get:>6.2f} {get_busy:>5.0%} "
            f"{points:>10,.0f} {points / base_push:>6.2f} {push_busy:>5.0%}"
        )
    print("cpu: the share of all cores busy during the run (server, database, Redis and wrk)")
    print("cores used during each run, by process kind:")
    for index, n in enumerate(results):
        for what, share in zip(("get", "push"), SHARES[2 * index : 2 * index + 2], strict=True):
            used = ", ".join(f"{k} {v:.2f}" for k, v in sorted(share.items()))
            print(f"  {n} worker(s), {what}: {used}")
    Path(lua.name).unlink()


if __name__ == "__main__":
    main()
