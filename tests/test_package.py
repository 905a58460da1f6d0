"""The package's shape: light SDK import, pinned public names, twins in step, schema in step."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import tether
from tests.conftest import RunningServer
from tether.client._config import Retries, parse_retry_after, retry_delay

ROOT = Path(__file__).resolve().parent.parent


def test_importing_tether_loads_no_server_code() -> None:
    code = (
        "import sys, tether; bad = [m for m in sys.modules if m.split('.')[0] in "
        "{'litestar', 'sqlalchemy', 'alembic', 'asyncpg', 'aiosqlite', 'argon2', 'jwt', "
        "'uvicorn', 'typer'} or m.startswith('tether.server')]; print(bad)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_public_names_are_pinned() -> None:
    assert sorted(tether.__all__) == sorted(
        [
            "APIError",
            "AsyncBroadcast",
            "AsyncChannel",
            "AsyncClient",
            "AsyncCollection",
            "AsyncCommand",
            "AsyncCommandGroup",
            "AsyncCommands",
            "AsyncContent",
            "AsyncDataCollection",
            "AsyncDataItem",
            "AsyncDeployment",
            "AsyncDevice",
            "AsyncDownloadablePackage",
            "AsyncEventStream",
            "AsyncExperience",
            "AsyncFeed",
            "AsyncFileTask",
            "AsyncFiles",
            "AsyncListener",
            "AsyncLocation",
            "AsyncProject",
            "AsyncRealtime",
            "AsyncResource",
            "AsyncResultSet",
            "AsyncTelemetry",
            "AsyncThing",
            "AsyncTwins",
            "AsyncUpdateCheck",
            "AsyncUpdates",
            "AsyncZone",
            "Answer",
            "AuthPayload",
            "AuthorizationError",
            "AuthenticationError",
            "BadRequestError",
            "Broadcast",
            "Channel",
            "ChecksumError",
            "Client",
            "ClientClosedError",
            "Collection",
            "Command",
            "CommandGroup",
            "CommandRejected",
            "CommandTimeoutError",
            "Commands",
            "ConfigurationError",
            "ConflictError",
            "Content",
            "Credentials",
            "DataCollection",
            "DataItem",
            "DeltaError",
            "Deployment",
            "Device",
            "DowngradeError",
            "DownloadError",
            "DownloadablePackage",
            "EventStream",
            "Experience",
            "Feed",
            "FileTask",
            "Files",
            "Listener",
            "LocalFileError",
            "Location",
            "NetworkError",
            "NotFoundError",
            "OAuthFlow",
            "OAuthGrant",
            "Outbox",
            "OutboxFullError",
            "Package",
            "PairingCode",
            "PairingError",
            "PermissionDeniedError",
            "Project",
            "PushError",
            "RateLimitError",
            "Reading",
            "Realtime",
            "ReceivedCommand",
            "RealtimeError",
            "RejectedEntry",
            "RequestTimeout",
            "Resource",
            "ResultSet",
            "Retries",
            "ServerError",
            "SigningKey",
            "TaskError",
            "TaskTimeoutError",
            "USE_CLIENT_DEFAULT",
            "Telemetry",
            "TetherError",
            "Thing",
            "Twins",
            "UpdateCheck",
            "Updates",
            "ValidationError",
            "Zone",
            "__version__",
            "aclose_all",
            "close_all",
        ]
    )


def test_every_sdk_error_is_a_tether_error() -> None:
    for name in tether.__all__:
        value = getattr(tether, name)
        if isinstance(value, type) and issubclass(value, Exception) and name != "ClientClosedError":
            assert issubclass(value, tether.TetherError), name


def _public_methods(cls: type) -> set[str]:
    return {
        n
        for n, _ in inspect.getmembers(cls)
        if not n.startswith("_") or n in {"__call__", "__iter__", "__aiter__"}
    }


def test_every_public_class_is_exported_with_its_twin() -> None:
    classes = {n for n in tether.__all__ if isinstance(getattr(tether, n), type)}
    for name in classes:
        if name.startswith("Async"):
            assert name.removeprefix("Async") in classes, name
        elif hasattr(tether.client, f"Async{name}"):
            assert f"Async{name}" in classes, name


def test_public_classes_name_the_public_module() -> None:
    for name in tether.__all__:
        value = getattr(tether, name)
        if isinstance(value, type):
            assert value.__module__ == "tether", name
            assert repr(value) == f"<class 'tether.{value.__name__}'>"


TWINS = [
    *sorted(
        (name.removeprefix("Async"), name)
        for name in tether.__all__
        if name.startswith("Async") and isinstance(getattr(tether, name), type)
    ),
    ("close_all", "aclose_all"),
]
"""Every exported blocking class with its asyncio twin (and the one pair of functions)."""


@pytest.mark.parametrize(("sync", "async_"), TWINS)
def test_sync_and_async_twins_have_the_same_names(sync: str, async_: str) -> None:
    blocking, asynchronous = getattr(tether, sync), getattr(tether, async_)
    if not isinstance(blocking, type):
        assert inspect.signature(blocking) == inspect.signature(asynchronous)
        assert inspect.iscoroutinefunction(asynchronous)
        return
    names = _public_methods(blocking) - {"__iter__", "__next__", "__enter__", "__exit__"}
    async_names = _public_methods(asynchronous) - {
        "__aiter__",
        "__anext__",
        "__aenter__",
        "__aexit__",
    }
    assert names == async_names


def test_generated_sync_twins_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_migrations_match_the_declared_tables(server: RunningServer) -> None:
    from tether.server.db.engine import create_engine, schema_differences
    from tether.server.settings import Settings

    settings = Settings.load({"data": server.data, "database_url": server.database_url}, environ={})

    async def differences() -> list[object]:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(schema_differences)
        finally:
            await engine.dispose()

    assert asyncio.run(differences()) == []


def test_retry_decisions() -> None:
    retries = Retries(total=2, backoff=1.0)
    assert retry_delay(retries, 0, "GET", status=503, retry_after="3") == 3.0
    assert retry_delay(retries, 0, "POST", status=429, retry_after="7") == 7.0
    assert 0 <= retry_delay(retries, 1, "GET", status=503) <= 2.0  # type: ignore[operator]
    assert retry_delay(retries, 2, "GET", status=503) is None
    assert retry_delay(retries, 0, "GET", status=500) is None
    assert retry_delay(retries, 0, "GET", network_error=True) is not None
    assert retry_delay(retries, 0, "POST", network_error=True) is None
    assert retry_delay(retries, 0, "GET", status=429, retry_after="100000") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0) == 0.0
    assert parse_retry_after("soon") is None


def test_settings_fail_naming_the_key() -> None:
    from tether.server.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="TETHER_PORT"):
        Settings.load(environ={"TETHER_PORT": "eighty"})
    with pytest.raises(SettingsError, match="TETHER_PAGE_SIZE"):
        Settings.load(environ={"TETHER_PAGE_SIZE": "0"})
    shown = Settings.load(environ={"TETHER_SECRET_KEY": "hunter2"}).describe()
    assert shown["secret_key"] == "********"
    assert (
        Settings.load(environ={"TETHER_DATABASE_URL": "postgresql://u@h/db"}).resolved_database_url
        == "postgresql+asyncpg://u@h/db"
    )
