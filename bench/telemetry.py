"""Telemetry ingest: points/s through Tether's HTTP API beside the same rows written straight
into the same schema by the driver (the database's own limit), in one run.

    .venv/bin/python bench/telemetry.py [--devices 8] [--backend sqlite|postgresql|both]

For 1, 100 and 1000 points per push (best of `--rounds`, the machine being noisy), `--devices`
concurrent devices push pre-built batches to a
`tether serve` process on a free loopback port; then the same rows, in transactions of the same
size, go into a fresh database with the same tables by raw `sqlite3` `executemany` (SQLite) or
asyncpg `COPY` (PostgreSQL at 127.0.0.1:5432, trust auth). Prints points/s and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
from _common import admin_token, free_port, start_tether
from sqlalchemy.ext.asyncio import create_async_engine

from tether.server.db.tables import metadata, telemetry_points

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_767_225_600.0
SHAPES = ((1, 3000), (100, 400), (1000, 120))  # points per push, pushes per run
COLUMNS = ("device_id", "field", "ts", "num", "value")


def batches(device_ids: list[str], per_push: int, pushes: int) -> list[tuple[str, bytes]]:
    """Pre-encoded pushes, round-robin over the devices; 10 fields per entry."""
    fields = min(10, per_push)
    out = []
    for n in range(pushes):
        device = device_ids[n % len(device_ids)]
        entries = [
            {"ts": T0 + n + e / 1000, "values": {f"f{k}": float(e + k) for k in range(fields)}}
            for e in range(per_push // fields)
        ]
        body = {"batch": uuid.uuid4().hex, "entries": entries}
        out.append((device, json.dumps(body).encode()))
    return out


def rows_of(push: list[tuple[str, bytes]]) -> list[list[tuple[Any, ...]]]:
    """The same pushes as rows of the points table, one list per transaction."""
    result = []
    for device, body in push:
        data = json.loads(body)
        result.append(
            [
                (device, field, round(entry["ts"] * 1e6), value, None)
                for entry in data["entries"]
                for field, value in entry["values"].items()
            ]
        )
    return result


async def through_api(url: str, token: str, pushes: list[tuple[str, bytes]], devices: int) -> float:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for push in pushes:
        queue.put_nowait(push)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=devices)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:

        async def device() -> None:
            while not queue.empty():
                device_id, body = queue.get_nowait()
                response = await http.post(f"/api/v1/devices/{device_id}/telemetry", content=body)
                if response.status_code != 200:
                    raise SystemExit(f"push failed: {response.status_code} {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(device() for _ in range(devices)))
        return time.perf_counter() - started


def raw_sqlite(path: Path, transactions: list[list[tuple[Any, ...]]]) -> float:
    sa_engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(sa_engine, tables=[telemetry_points])
    sa_engine.dispose()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    sql = f"INSERT INTO telemetry_points ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?)"
    started = time.perf_counter()
    for rows in transactions:
        db.execute("BEGIN")
        db.executemany(sql, rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


async def raw_postgres(url: str, transactions: list[list[tuple[Any, ...]]], devices: int) -> float:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=[telemetry_points])
    await engine.dispose()
    pool = await asyncpg.create_pool(url, min_size=devices, max_size=devices)
    queue: asyncio.Queue[list[tuple[Any, ...]]] = asyncio.Queue()
    for rows in transactions:
        queue.put_nowait(rows)

    async def writer() -> None:
        async with pool.acquire() as c:
            while not queue.empty():
                rows = queue.get_nowait()
                async with c.transaction():
                    await c.copy_records_to_table("telemetry_points", records=rows, columns=COLUMNS)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(devices)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return elapsed


async def pg_database(action: str, name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        if action == "create":
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def run(backend: str, devices: int, rounds: int) -> list[tuple[str, int, float, float]]:
    work = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    names: list[str] = []

    def new_pg_database() -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(pg_database("create", name))
        names.append(name)
        return PG_ADMIN.rsplit("/", 1)[0] + "/" + name

    api_db = new_pg_database() if backend == "postgresql" else None
    port = free_port()
    process = start_tether(work / "data", port, api_db)
    results = []
    try:
        url = f"http://127.0.0.1:{port}"
        token = admin_token(url)
        auth = {"Authorization": f"Bearer {token}"}
        ids = [
            httpx.post(f"{url}/api/v1/devices", json={"name": f"d{n}"}, headers=auth).json()["id"]
            for n in range(devices)
        ]
        for per_push, pushes in SHAPES:
            raw_target = work / f"raw-{per_push}.db" if backend == "sqlite" else new_pg_database()
            best_api = best_raw = 0.0
            for _ in range(rounds):
                pushes_list = batches(ids, per_push, pushes)
                transactions = rows_of(pushes_list)
                points = sum(len(rows) for rows in transactions)
                api_seconds = asyncio.run(through_api(url, token, pushes_list, devices))
                if backend == "sqlite":
                    raw_seconds = raw_sqlite(Path(raw_target), transactions)
                else:
                    raw_seconds = asyncio.run(raw_postgres(str(raw_target), transactions, devices))
                best_api = max(best_api, points / api_seconds)
                best_raw = max(best_raw, points / raw_seconds)
            results.append((backend, per_push, best_api, best_raw))
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)
        for name in names:
            asyncio.run(pg_database("drop", name))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3, help="Best of this many rounds each.")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    print(
        f"{args.devices} concurrent devices; Python {sys.version.split()[0]}; "
        "one tether serve worker; raw = executemany (SQLite) / COPY (PostgreSQL)"
    )
    print(f"{'backend':<12}{'points/push':>12}{'tether pts/s':>14}{'raw pts/s':>12}{'ratio':>8}")
    for backend in backends:
        for name, per_push, api, raw in run(backend, args.devices, args.rounds):
            print(f"{name:<12}{per_push:>12}{api:>14,.0f}{raw:>12,.0f}{api / raw:>8.2f}")


if __name__ == "__main__":
    main()
