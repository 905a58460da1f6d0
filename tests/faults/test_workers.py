"""`tether serve --workers N`: several processes on one port, on PostgreSQL and Redis; refused
with a reason where the back end cannot take them."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tether
from tests.conftest import (
    OPERATOR,
    _drop_postgres_database,
    _postgres_database,
    free_port,
    wait_for,
)
from tests.faults.conftest import serve

pytestmark = pytest.mark.subprocess


def workers_of(parent: int) -> list[int]:
    """The worker processes a uvicorn parent process started."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    """Whether the process lives (a zombie waiting for its new parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_two_workers_serve_one_port_and_share_realtime(redis_url: str, tmp_path: Path) -> None:
    database = _postgres_database()
    port = free_port()
    process = serve(port, tmp_path / "data", database, redis_url, workers="2")
    url = f"http://127.0.0.1:{port}"
    org, user, password = OPERATOR
    try:
        assert len(workers_of(process.pid)) == 2
        clients = [
            tether.Client(url, username=user, password=password, organization=org) for _ in range(9)
        ]
        caster, listeners = clients[0], clients[1:]
        waiting = [c.get_channel("workers").listen("ping", timeout=10) for c in listeners]
        answered = []

        def answer(n: int) -> None:
            got = waiting[n].wait(timeout=30)
            assert got is not None
            got.respond(n)
            answered.append(n)

        threads = [threading.Thread(target=answer, args=(n,)) for n in range(len(waiting))]
        for thread in threads:
            thread.start()
        responses = caster.get_channel("workers").broadcast("ping", timeout=10)
        for thread in threads:
            thread.join(30)
        assert sorted(responses) == list(range(8))
        for client in clients:
            client.close()
    finally:
        process.terminate()
        process.wait(30)
        _drop_postgres_database(database)


def test_several_workers_on_sqlite_are_refused_with_the_reason(tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "tether"), "serve", "--data", str(tmp_path)]
    done = subprocess.run(
        [*command, "--port", str(free_port()), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert "several workers need PostgreSQL" in done.stderr


def test_workers_stop_when_their_supervisor_is_killed(redis_url: str, tmp_path: Path) -> None:
    database = _postgres_database()
    port = free_port()
    process = serve(port, tmp_path / "data", database, redis_url, workers="2")
    try:
        workers = workers_of(process.pid)
        assert len(workers) == 2
        process.kill()
        process.wait(30)

        def gone() -> bool:
            return not any(running(pid) for pid in workers)

        wait_for(gone, timeout=20, what="the orphaned workers to stop")
    finally:
        process.kill()
        _drop_postgres_database(database)
