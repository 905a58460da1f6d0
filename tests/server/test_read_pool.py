"""Reads run off the event loop, within a time limit: a heavy telemetry query leaves health
checks and realtime frames of the same process answering quickly, and one past the limit ends
in a clear error."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, Tenant
from tests.server.inprocess import settings_for, signed_in
from tests.server.test_realtime import receive, send, socket, token_of

POINTS = 400_000
"""Enough that one day-bucket average takes well over the 50 ms the loop may stall."""
HOUR = 3600 * 1_000_000


def _rows(device_id: str) -> list[tuple[str, str, int, float]]:
    start = 1_700_000_000 * 1_000_000
    return [(device_id, "t", start + n * 10_000_000, float(n % 97)) for n in range(POINTS)]


def _insert_sqlite(path: Path, device_id: str) -> None:
    with sqlite3.connect(path, timeout=30) as conn:
        conn.executemany(
            "INSERT INTO telemetry_points (device_id, field, ts, num) VALUES (?, ?, ?, ?)",
            _rows(device_id),
        )


async def _insert_postgres(url: str, device_id: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.copy_records_to_table(
            "telemetry_points",
            records=_rows(device_id),
            columns=["device_id", "field", "ts", "num"],
        )
    finally:
        await conn.close()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def test_a_heavy_telemetry_query_leaves_health_and_realtime_answering(
    server: RunningServer, tenant: Tenant
) -> None:
    with tenant.client() as client:
        device_id = client.devices.create("busy").id
    if server.database_url:
        asyncio.run(_insert_postgres(server.database_url, device_id))
    else:
        _insert_sqlite(server.data / "tether.db", device_id)
    token = token_of(tenant)
    heavy_url = f"/api/v1/devices/{device_id}/telemetry?field=t&every=86400&agg=avg"

    async def main() -> tuple[list[float], list[float], list[float]]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http,
            socket(server, token) as ws,
        ):
            heavy_times: list[float] = []

            async def heavy() -> None:
                for _ in range(3):
                    began = time.perf_counter()
                    answer = await http.get(heavy_url)
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["points"], "the query aggregated the points"
                    heavy_times.append(time.perf_counter() - began)

            health: list[float] = []
            frames: list[float] = []
            running = asyncio.create_task(heavy())
            n = 0
            while not running.done():
                began = time.perf_counter()
                assert (await http.get("/api/v1/health")).status_code == 200
                health.append(time.perf_counter() - began)
                began = time.perf_counter()
                op = "unsubscribe" if n % 2 else "subscribe"
                await send(ws, op=op, id=n, channel=f"c{n // 2}")
                assert await receive(ws) == {"op": "ack", "id": n}
                frames.append(time.perf_counter() - began)
                n += 1
            await running
            return heavy_times, health, frames

    heavy_times, health, frames = asyncio.run(main())
    assert statistics.median(heavy_times) > 0.05, (
        f"the heavy query took {heavy_times}: too light to show a stall"
    )
    assert len(health) >= 10
    assert _percentile(health, 0.99) < 0.05, f"health p99 {_percentile(health, 0.99):.3f} s"
    assert _percentile(frames, 0.99) < 0.05, f"realtime p99 {_percentile(frames, 0.99):.3f} s"


@pytest.mark.anyio
async def test_a_read_past_the_time_limit_is_stopped_with_a_clear_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings = type(settings).load({**settings.values, "read_timeout": 0.02}, environ={})
    async with signed_in(settings) as (http, _state):
        created = await http.post("/api/v1/devices", json={"name": "busy"})
        device_id: str = created.json()["id"]
        _insert_sqlite(tmp_path / "tether.db", device_id)
        url = f"/api/v1/devices/{device_id}/telemetry?field=t&every=86400&agg=avg"
        answer = await http.get(url)
        assert answer.status_code == 422, answer.text
        problem: dict[str, Any] = answer.json()
        assert problem["code"] == "query_timeout"
        assert "TETHER_READ_TIMEOUT" in problem["detail"]
        assert (await http.get(f"/api/v1/devices/{device_id}")).status_code == 200
