"""A `tether serve` process the fault tests may kill with SIGKILL and start again."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MASTER_KEY, OPERATOR, RunningServer, free_port, unavailable, wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"


def serve(
    port: int,
    data: Path,
    database_url: str | None,
    redis_url: str | None = None,
    **settings: str,
) -> subprocess.Popen[bytes]:
    """Start `tether serve` (`settings` as TETHER_* variables; one worker unless `workers`
    says, so that killing the process kills the node) and wait until it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env |= {f"TETHER_{name.upper()}": value for name, value in {"workers": "1", **settings}.items()}
    org, user, password = OPERATOR
    env |= {
        "TETHER_ADMIN_ORGANIZATION": org,
        "TETHER_ADMIN_USERNAME": user,
        "TETHER_ADMIN_PASSWORD": password,
        "TETHER_MASTER_KEY": MASTER_KEY,
    }
    if database_url:
        env["TETHER_DATABASE_URL"] = database_url
    if redis_url:
        env["TETHER_REDIS_URL"] = redis_url
    command = [str(Path(sys.executable).parent / "tether"), "serve", "--data", str(data)]
    data.parent.mkdir(parents=True, exist_ok=True)
    log = data.parent / f"serve-{port}.log"
    """The process's own log, beside its data folder, to read when a test fails."""
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--set", "log_level=warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"tether serve exited with {process.returncode}")
        try:
            return httpx.get(f"{url}/api/v1/health").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=60, what="tether serve")
    return process


@pytest.fixture
def killable(server: RunningServer, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A `tether serve` process of our own (on the fixture's database when it is PostgreSQL)."""
    port = free_port()
    state = {"port": port, "url": f"http://127.0.0.1:{port}", "data": tmp_path / "data"}
    state["process"] = serve(port, state["data"], server.database_url)
    try:
        yield state
    finally:
        state["process"].kill()
        state["process"].wait(30)


@pytest.fixture
def redis_url() -> str:
    """The Redis at 127.0.0.1:6379, when it answers."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL
