"""The database engine: opening it, migrating it and a few helpers every area uses."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Result
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from tether.server.db.prepared import prepare
from tether.server.db.tables import metadata, server_state
from tether.server.identity.sealed import Sealer, is_sealed

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


def new_id() -> str:
    """A time-ordered UUID (version 7 layout), so ids sort in creation order."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


class RowView:
    """Attribute access over a dict of column values, shaped like a result row."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _on_connect(engine: sa.Engine, *pragmas: str) -> None:
    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()


def create_engine(url: str, pool_size: int = 20) -> AsyncEngine:
    """The engine for transactions; SQLite gets WAL mode, foreign keys and a busy timeout.

    On SQLite it has one connection: SQLite takes one writer at a time anyway, and writers on
    separate connections find out by polling the lock with sleeps, which cost more than the
    writes. Transactions queue for the connection instead. A PostgreSQL pool has no overflow:
    a connection opened for a burst and closed after it costs a server process fork, far more
    than waiting for a pooled one."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0)
        _on_connect(engine.sync_engine, "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=0)


class Reads(Protocol):
    """What a read needs of a connection: run one statement and hand back its rows."""

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None, /
    ) -> Result[Any]: ...


async def fetch(
    conn: Reads | AsyncConnection,
    statement: sa.Select[Any],
    parameters: Mapping[str, Any] | None = None,
) -> Sequence[Any]:
    """The rows of a statement built once (see `prepared`), by name or position. On the
    reader's connections the driver runs it directly; in a transaction, SQLAlchemy does."""
    if isinstance(conn, _InlineReads | _PooledReads):
        return await conn.fetch(statement, parameters)
    return await fetch_built(conn, statement, parameters)


async def fetch_built(
    conn: Reads | AsyncConnection,
    statement: sa.Select[Any],
    parameters: Mapping[str, Any] | None = None,
) -> Sequence[Any]:
    """The rows of a statement built per request, through SQLAlchemy, whose cache knows it by
    its shape (`fetch` would compile it anew each time)."""
    return (await conn.execute(statement, parameters)).all()


class _InlineReads:
    """One SQLite connection shared by every inline read of the process; it is its own
    context manager, so taking it costs nothing."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._driver: sqlite3.Connection = connection.connection.driver_connection  # type: ignore[assignment]

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None, /
    ) -> Result[Any]:
        return self._connection.execute(statement, parameters)

    async def fetch(
        self, statement: sa.Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> list[Any]:
        prepared = prepare(statement, self._connection.dialect)
        cursor = self._driver.execute(prepared.sql, prepared.arguments(parameters))
        return prepared.shape(cursor.fetchall())

    async def __aenter__(self) -> _InlineReads:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None


class _PooledReads:
    """A pooled PostgreSQL connection for reads, whose prepared statements asyncpg runs."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._context = engine.connect()

    async def __aenter__(self) -> _PooledReads:
        self._connection = await self._context.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._context.__aexit__(*exc)

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None, /
    ) -> Result[Any]:
        return await self._connection.execute(statement, parameters)

    async def fetch(
        self, statement: sa.Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> list[Any]:
        prepared = prepare(statement, self._connection.dialect)
        driver = (await self._connection.get_raw_connection()).driver_connection
        assert driver is not None
        return prepared.shape(await driver.fetch(prepared.sql, *prepared.arguments(parameters)))


class Reader:
    """Connections for reads that need no transaction: the hot path of GETs.

    On SQLite a read runs inline on the event loop thread, on one autocommit `query_only`
    connection: in WAL mode a reader never waits for a lock, and a point query costs
    microseconds, far less than handing it to a worker thread and back. On PostgreSQL reads
    use an autocommit pool, so no transaction is opened and no rollback is sent afterwards.
    """

    def __init__(self, engine: AsyncEngine, pool_size: int = 20) -> None:
        self._inline: sa.Engine | None = None
        self._shared: _InlineReads | None = None
        self._pool = engine
        url = engine.url
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                self._inline = sa.create_engine(
                    url.set(drivername="sqlite"),
                    connect_args={"check_same_thread": False},
                    isolation_level="AUTOCOMMIT",
                    poolclass=sa.StaticPool,
                )
                _on_connect(self._inline, "query_only=ON")
        else:
            self._pool = create_async_engine(
                url, isolation_level="AUTOCOMMIT", pool_size=pool_size, max_overflow=0
            )
        self._own_pool = self._pool is not engine

    def connect(self) -> AbstractAsyncContextManager[Reads]:
        """`async with reader.connect() as conn:` gives a connection for reads."""
        if self._inline is not None:
            if self._shared is None:
                self._shared = _InlineReads(self._inline.connect())
            return self._shared
        if self._pool.dialect.driver == "asyncpg":
            return _PooledReads(self._pool)
        return self._pool.connect()

    async def dispose(self) -> None:
        if self._shared is not None:
            self._shared._connection.close()
            self._shared = None
        if self._inline is not None:
            self._inline.dispose()
        if self._own_pool:
            await self._pool.dispose()


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade_schema(connection: Connection) -> None:
    """Apply every migration not yet applied (Alembic, on the caller's connection)."""
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


def schema_differences(connection: Connection) -> list[Any]:
    """What separates the migrated schema from the tables the code declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, metadata))


async def signing_key(conn: AsyncConnection, configured: str | None, sealer: Sealer) -> str:
    """The token signing key: the configured one, or one generated once and shared via the DB,
    where it is kept sealed (a key stored before sealing existed is sealed now)."""
    if configured:
        return configured
    row = await conn.execute(
        sa.select(server_state.c.value).where(server_state.c.key == "signing_key")
    )
    value = row.scalar()
    if value is not None:
        key = sealer.open(str(value))
        if not is_sealed(str(value)):
            await conn.execute(
                server_state.update()
                .where(server_state.c.key == "signing_key")
                .values(value=sealer.seal(key))
            )
        return key
    key = secrets.token_urlsafe(48)
    await conn.execute(server_state.insert().values(key="signing_key", value=sealer.seal(key)))
    return key


def private_database(settings_url: str) -> None:
    """Create the SQLite database file (and so its WAL and shared-memory files, which SQLite
    makes with the database's mode) readable and writable by its owner only."""
    url = sa.engine.make_url(settings_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    for each in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if each.exists():
            each.chmod(0o600)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


async def bulk_insert(
    conn: AsyncConnection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert many rows through the driver's own bulk path, inside the caller's transaction:
    COPY on PostgreSQL, one `executemany` on SQLite. No per-row work in SQLAlchemy."""
    driver = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "postgresql":
        await driver.copy_records_to_table(table.name, records=rows, columns=list(columns))  # type: ignore[union-attr]
        return
    marks = ", ".join("?" * len(columns))
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
    await driver.executemany(sql, rows)  # type: ignore[union-attr]


async def run_on_sqlite_thread(conn: AsyncConnection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` with the raw `sqlite3` connection behind `conn`, on that connection's own
    thread and inside its current transaction: one thread hop for a whole batch of statements,
    where SQLAlchemy's aiosqlite adapter makes four per statement. aiosqlite has no public
    call for this; `Connection._execute` is the one its own cursors use."""
    driver = (await conn.get_raw_connection()).driver_connection
    return await driver._execute(fn, driver._conn)  # type: ignore[union-attr,no-any-return]


def upsert(conn: AsyncConnection, table: sa.Table) -> Any:
    """The dialect's INSERT, which offers `on_conflict_do_nothing/do_update`."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
