"""Shared fixtures: a real Tether server per back end, and factories for isolated tenants.

Every server-backed test runs twice: on SQLite and on PostgreSQL. The PostgreSQL run uses a
fresh database created for the session. Tests of stored bytes (files, content, packages;
marked `blobs`) run a third time on the cluster's back end: PostgreSQL with blobs in an
S3-compatible store, moto's standalone server, started for the session. Without PostgreSQL (or
moto) those runs skip with the reason, except in CI (`CI=true`), where a missing service fails
the run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

import tether

PG_ADMIN_URL = os.environ.get("TETHER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
OPERATOR = ("operator", "root", "operator-password-1")
MASTER_KEY = "the-test-servers-master-key"
"""Every server a test starts on the session's database seals its secrets with this key, as the
nodes of one cluster must."""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's TETHER_* variables, ~/.netrc or saved logins."""
    for name in list(os.environ):
        if name.startswith("TETHER_") and name != "TETHER_TEST_POSTGRES":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("NETRC", raising=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def temporary_files(data: Path) -> list[Path]:
    """The temporary upload files under a data folder (each server's lock file aside)."""
    incoming = data / "blobs" / "incoming"
    return [p for p in incoming.rglob("*") if p.is_file() and p.name != ".lock"]


def _postgres_database() -> str:
    """A new empty database for this test session; skip (or fail in CI) without PostgreSQL."""
    import asyncpg

    name = f"tether_test_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_postgres_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def unavailable(reason: str) -> NoReturn:
    """Skip for want of a service, or fail in CI, where every service must be there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class S3Server:
    """An S3-compatible server on loopback and a bucket of this session's."""

    endpoint: str
    bucket: str

    def settings(self, prefix: str) -> dict[str, str]:
        """The server settings that keep blobs under `prefix` of the bucket."""
        return {
            "blobs_url": f"s3://{self.bucket}/{prefix}",
            "s3_endpoint": self.endpoint,
            "s3_access_key_id": "tether",
            "s3_secret_access_key": "tether-secret",
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3 server, as a process of its own on a free loopback port."""
    import httpx

    command = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if command is None:
        unavailable("moto's server is not installed (pip install 'moto[server]')")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("w")
    process = subprocess.Popen(
        [command, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )

    def ready() -> bool:
        if process.poll() is not None:
            return True
        try:
            return httpx.put(f"{endpoint}/tether-tests").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, timeout=60, what="the S3 server")
        if process.poll() is not None:
            unavailable(f"moto's server exited with {process.returncode}")
        yield S3Server(endpoint, "tether-tests")
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a server runs on each back end; `blobs` tests on S3 too. The
    console's browser tests run on SQLite only: its pages are the same on both back ends, and
    every API call under them is tested on both (running each browser flow twice cost three
    minutes of CI for no new behaviour)."""
    if "server" in metafunc.fixturenames:
        backends = ["sqlite", "postgresql"]
        if metafunc.module.__name__.startswith("tests.console."):
            backends = ["sqlite"]
        if metafunc.definition.get_closest_marker("blobs"):
            backends.append("s3")
        metafunc.parametrize("server", backends, indirect=True, scope="session")


@dataclass
class RunningServer:
    url: str
    backend: str
    database_url: str | None
    data: Path
    blobs: dict[str, str]
    """The settings of its blob store (none: the data folder)."""


@pytest.fixture(scope="session")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A real Tether server (uvicorn, in a thread) on a free loopback port, on the back end
    `request.param` names: sqlite, postgresql, or s3 (PostgreSQL, blobs in an S3 store)."""
    import uvicorn

    from tether.server.app import create_app, uvicorn_options
    from tether.server.settings import Settings

    backend: str = request.param
    database_url = _postgres_database() if backend in ("postgresql", "s3") else None
    blobs: dict[str, str] = {}
    if backend == "s3":
        blobs = request.getfixturevalue("s3_server").settings(f"server-{secrets.token_hex(4)}")
    data = tmp_path_factory.mktemp(f"server-{backend}")
    org, user, password = OPERATOR
    settings = Settings.load(
        {
            **blobs,
            "data": data,
            "database_url": database_url,
            "admin_organization": org,
            "admin_username": user,
            "admin_password": password,
            "master_key": MASTER_KEY,
            "login_max_failures": 5,
            "login_window": 60,
        },
        environ={},
    )
    port = free_port()
    options = {**uvicorn_options(settings), "port": port, "log_level": "warning"}
    config = uvicorn.Config(create_app(settings), lifespan="on", **options)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    wait_for(lambda: uv.started or not thread.is_alive(), what="the server to start")
    if not uv.started:
        pytest.fail("the test server did not start")
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", backend, database_url, data, blobs)
    finally:
        uv.should_exit = True
        thread.join(30)
        if database_url:
            _drop_postgres_database(database_url)


def rewrite_blob(server: RunningServer, sha256: str, change: Callable[[bytes], bytes]) -> None:
    """Change the stored bytes of a blob behind the server's back, wherever it keeps them."""
    if not server.blobs:
        stored = server.data / "blobs" / sha256[:2] / sha256[2:4] / sha256
        stored.write_bytes(change(stored.read_bytes()))
        return
    import obstore

    from tether.server.files.objects import ObjectBlobs, s3_store
    from tether.server.settings import Settings

    store = s3_store(Settings.load(server.blobs, environ={}))
    key = ObjectBlobs.key(sha256)
    obstore.put(store, key, change(bytes(obstore.get(store, key).bytes())))


@pytest.fixture
def operator(server: RunningServer) -> Iterator[tether.Client]:
    org, user, password = OPERATOR
    with tether.Client(server.url, username=user, password=password, organization=org) as c:
        yield c


@dataclass
class Tenant:
    """An organization made for one test, with its admin's credentials."""

    url: str
    organization: str
    username: str
    password: str

    def client(self, **kwargs: object) -> tether.Client:
        return tether.Client(
            self.url,
            username=self.username,
            password=self.password,
            organization=self.organization,
            **kwargs,
        )  # type: ignore[arg-type]

    def async_client(self, **kwargs: object) -> tether.AsyncClient:
        return tether.AsyncClient(
            self.url,
            username=self.username,
            password=self.password,
            organization=self.organization,
            **kwargs,
        )  # type: ignore[arg-type]


@pytest.fixture
def make_tenant(server: RunningServer, operator: tether.Client) -> Callable[[], Tenant]:
    def make() -> Tenant:
        name = f"org-{secrets.token_hex(6)}"
        password = secrets.token_urlsafe(12)
        operator.post(
            "organizations", {"name": name, "admin": {"username": "admin", "password": password}}
        )
        return Tenant(server.url, name, "admin", password)

    return make


@pytest.fixture
def tenant(make_tenant: Callable[[], Tenant]) -> Tenant:
    return make_tenant()


@pytest.fixture
def client(tenant: Tenant) -> Iterator[tether.Client]:
    with tenant.client() as c:
        yield c
