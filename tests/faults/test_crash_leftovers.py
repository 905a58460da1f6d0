"""A server killed with SIGKILL mid-upload leaves nothing behind once any server of the store
starts again: no temporary file, no blob file that no row records, a sound database; and
concurrent large bodies to the unauthenticated routes keep its memory bounded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import OPERATOR, RunningServer, free_port, temporary_files, wait_for
from tests.faults.conftest import serve
from tether.server.db.engine import create_engine
from tether.server.db.tables import blobs
from tether.server.settings import Settings

pytestmark = pytest.mark.subprocess

GRACE = "30"
"""The blob grace of these servers (TETHER_BLOB_GRACE): a blob file older than this that no
row records is reclaimed at start."""


def _token(url: str) -> str:
    org, user, password = OPERATOR
    grant = {"grant_type": "password", "username": user, "password": password, "organization": org}
    return str(httpx.post(f"{url}/api/v1/auth/token", json=grant).json()["access_token"])


def _endless(stop: threading.Event) -> Iterator[bytes]:
    chunk = os.urandom(256 * 1024)
    while not stop.is_set():
        yield chunk


def _upload_until_killed(url: str, path: str, process: Any, data: Path) -> None:
    """Stream a body that never ends to `path` and kill the server once its bytes are on disk."""
    stop = threading.Event()
    headers = {"Authorization": f"Bearer {_token(url)}"}

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.put(f"{url}{path}", content=_endless(stop), headers=headers, timeout=60)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_for(
            lambda: any(f.stat().st_size > 1024 * 1024 for f in temporary_files(data)),
            timeout=30,
            what="the upload's temporary file",
        )
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        stop.set()
        sender.join(60)


def test_kills_mid_upload_and_publish_leave_no_temporary_file(
    server: RunningServer, tmp_path: Path
) -> None:
    port, data = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    process = serve(port, data, server.database_url, blob_grace=GRACE)
    try:
        for round_ in range(6):
            path = (
                f"/api/v1/files/data/killed-{round_}.bin"
                if round_ % 2 == 0
                else f"/api/v1/packages/killed/versions/1.0.{round_}"
            )
            _upload_until_killed(url, path, process, data)
            assert temporary_files(data), "the kill should leave a temporary file"
            process = serve(port, data, server.database_url, blob_grace=GRACE)
            assert temporary_files(data) == []
        whole = b"whole" * 1000
        finished = httpx.put(
            f"{url}/api/v1/files/data/whole.bin",
            content=whole,
            headers={"Authorization": f"Bearer {_token(url)}"},
        )
        assert finished.status_code in (200, 201)
    finally:
        process.kill()
        process.wait(30)
    on_disk = sorted(p.name for p in (data / "blobs").glob("??/??/*"))
    assert on_disk == [hashlib.sha256(whole).hexdigest()]
    assert asyncio.run(_recorded(server, data, on_disk)) == on_disk
    if server.backend == "sqlite":
        with sqlite3.connect(data / "tether.db") as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            names = [r[0] for r in raw.execute("SELECT path FROM files")]
        assert names == ["/whole.bin"]


async def _recorded(server: RunningServer, data: Path, hashes: list[str]) -> list[str]:
    """Which of `hashes` the database records as blobs (rows and files must agree)."""
    settings = Settings.load({"data": data, "database_url": server.database_url}, environ={})
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(sa.select(blobs.c.sha256).where(blobs.c.sha256.in_(hashes)))
            return sorted(found.scalars())
    finally:
        await engine.dispose()


def test_a_blob_no_row_records_is_removed_at_the_next_start(
    server: RunningServer, tmp_path: Path
) -> None:
    """What a kill between moving a blob into place and committing its row leaves: the start
    of any server on the store removes it once its grace has passed, and spares a fresh one."""
    port, data = free_port(), tmp_path / "data"
    first = serve(port, data, server.database_url, blob_grace=GRACE)
    first.kill()
    first.wait(30)
    stale, fresh = os.urandom(1000), os.urandom(1000)
    placed = []
    for content in (stale, fresh):
        sha = hashlib.sha256(content).hexdigest()
        path = data / "blobs" / sha[:2] / sha[2:4] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        placed.append(path)
    old = time.time() - 120
    os.utime(placed[0], (old, old))
    process = serve(port, data, server.database_url, blob_grace=GRACE)
    try:
        wait_for(lambda: not placed[0].exists(), timeout=10, what="the unrecorded blob removed")
        assert placed[1].exists()
    finally:
        process.kill()
        process.wait(30)


def _resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


MEMORY_BOUND_MB = 64


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read RSS")
def test_concurrent_large_bodies_to_open_routes_keep_memory_bounded(
    server: RunningServer, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = serve(port, tmp_path / "data", server.database_url)
    body = b'{"grant_type": "password", "username": "' + b"x" * (16 * 1024 * 1024) + b'"}'

    async def flood() -> list[int]:
        async with httpx.AsyncClient(timeout=120) as http:

            async def one(n: int) -> int:
                path = "/api/v1/auth/token" if n % 2 else "/api/v1/pairing"
                try:
                    return (await http.post(f"{url}{path}", content=body)).status_code
                except httpx.HTTPError:
                    return 0

            return await asyncio.gather(*(one(n) for n in range(60)))

    try:
        before = _resident_mb(process.pid)
        statuses = asyncio.run(flood())
        after = _resident_mb(process.pid)
    finally:
        process.kill()
        process.wait(30)
    assert set(statuses) <= {413, 0}, statuses
    assert statuses.count(413) >= 30, statuses
    print(f"resident memory {before:.0f} -> {after:.0f} MB under 60 x 16 MB bodies")
    assert after - before < MEMORY_BOUND_MB, (before, after)
