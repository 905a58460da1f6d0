"""Reads that need no transaction, without stalling the event loop.

Every read goes to a bounded pool with a time limit (`TETHER_READ_POOL_SIZE`,
`TETHER_READ_TIMEOUT`), the way datasette runs its queries. On SQLite, whose calls block, the
pool is threads, each with its own `query_only` connection (in WAL mode a reader never waits
for a lock), and a query past its deadline is interrupted by SQLite's progress handler. On
PostgreSQL reads are asynchronous already: an autocommit pool, and past the deadline asyncpg
cancels the query on the server.

Only point lookups by key, prepared once (a device by id, a credential by its id), may run
inline on the loop's thread with `Reader.point()`: they cost microseconds, far less than the
hop to a thread and back, and no input can make them scan.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Result
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from tether.server.db.engine import on_connect
from tether.server.db.prepared import prepare
from tether.server.problems import Problem

T = TypeVar("T")
_CHECK_EVERY = 1000
"""SQLite virtual machine steps between two looks at the deadline."""


class Reads(Protocol):
    """What a read needs of a connection: run one statement and hand back its rows."""

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None, /
    ) -> Result[Any]: ...


def too_slow(timeout: float) -> Problem:
    return Problem(
        422,
        f"The query took longer than the server's limit of {timeout:g} s "
        "(TETHER_READ_TIMEOUT). Ask for less: a shorter time range, a coarser bucket or a "
        "smaller page.",
        code="query_timeout",
    )


async def fetch(
    conn: Reads | AsyncConnection,
    statement: sa.Select[Any],
    parameters: Mapping[str, Any] | None = None,
) -> Sequence[Any]:
    """The rows of a statement built once (see `prepared`), by name or position. On the
    reader's connections the driver runs it directly; in a transaction, SQLAlchemy does."""
    if isinstance(conn, _InlineReads | _ThreadReads | _PooledReads):
        return await conn.fetch(statement, parameters)
    return (await conn.execute(statement, parameters)).all()


def _fetch_on(
    connection: Connection, statement: sa.Select[Any], parameters: Mapping[str, Any] | None
) -> list[Any]:
    prepared = prepare(statement, connection.dialect)
    driver: sqlite3.Connection = connection.connection.driver_connection  # type: ignore[assignment]
    cursor = driver.execute(prepared.sql, prepared.arguments(parameters))
    return prepared.shape(cursor.fetchall())


def _buffered(result: Result[Any]) -> Result[Any]:
    """A result whose rows are all read now, so it can cross back from the thread."""
    return result.freeze()()


class _InlineReads:
    """One SQLite connection shared by the point lookups of the process, on the loop's
    thread; it is its own context manager, so taking it costs nothing."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None, /
    ) -> Result[Any]:
        return self._connection.execute(statement, parameters)

    async def fetch(
        self, statement: sa.Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> list[Any]:
        return _fetch_on(self._connection, statement, parameters)

    async def __aenter__(self) -> _InlineReads:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None


class _SqlitePool:
    """Threads, each holding one `query_only` SQLite connection of its own."""

    def __init__(self, engine: sa.Engine, size: int, timeout: float) -> None:
        self.timeout = timeout
        self._engine = engine
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="tether-read")
        self._local = threading.local()
        self._opened: queue.SimpleQueue[Connection] = queue.SimpleQueue()

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._engine.connect()
            self._local.connection = connection
            self._opened.put(connection)
        return connection

    def _timed(self, work: Callable[[Connection], T]) -> T:
        connection = self._connection()
        driver: sqlite3.Connection = connection.connection.driver_connection  # type: ignore[assignment]
        deadline = time.monotonic() + self.timeout
        driver.set_progress_handler(lambda: time.monotonic() > deadline, _CHECK_EVERY)
        try:
            return work(connection)
        except (sa.exc.OperationalError, sqlite3.OperationalError) as exc:
            if "interrupted" in str(exc):
                raise too_slow(self.timeout) from None
            raise
        finally:
            driver.set_progress_handler(None, 0)

    async def run(self, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, work)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        while not self._opened.empty():
            self._opened.get().close()
        self._engine.dispose()


class _ThreadReads:
    """Reads of one request on the SQLite pool: each statement runs on a pool thread."""

    def __init__(self, pool: _SqlitePool) -> None:
        self._pool = pool

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None, /
    ) -> Result[Any]:
        return await self._pool.run(
            lambda connection: _buffered(connection.execute(statement, parameters))
        )

    async def fetch(
        self, statement: sa.Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> list[Any]:
        return await self._pool.run(lambda connection: _fetch_on(connection, statement, parameters))

    async def __aenter__(self) -> _ThreadReads:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None


class _PooledReads:
    """A pooled PostgreSQL connection for reads, whose prepared statements asyncpg runs,
    each statement bounded by the read timeout."""

    def __init__(self, engine: AsyncEngine, timeout: float) -> None:
        self._context = engine.connect()
        self._timeout = timeout

    async def __aenter__(self) -> _PooledReads:
        self._connection = await self._context.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._context.__aexit__(*exc)

    async def _bounded(self, work: Awaitable[T]) -> T:
        """`work`, cancelled (and so the query on the server) past the read timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                return await work
        except TimeoutError:
            raise too_slow(self._timeout) from None

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None, /
    ) -> Result[Any]:
        return await self._bounded(self._connection.execute(statement, parameters))

    async def fetch(
        self, statement: sa.Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> list[Any]:
        prepared = prepare(statement, self._connection.dialect)
        driver = (await self._connection.get_raw_connection()).driver_connection
        assert driver is not None
        rows = await self._bounded(driver.fetch(prepared.sql, *prepared.arguments(parameters)))
        return prepared.shape(rows)


class Reader:
    """Connections for reads that need no transaction: the hot path of GETs.

    `connect()` is for any read; `point()` only for point lookups by key (see the module)."""

    def __init__(
        self,
        engine: AsyncEngine,
        pool_size: int = 10,
        threads: int = 4,
        timeout: float = 10.0,
        pool_timeout: float = 30.0,
    ) -> None:
        self._inline: sa.Engine | None = None
        self._shared: _InlineReads | None = None
        self._threads: _SqlitePool | None = None
        self._pool = engine
        self.timeout = timeout
        url = engine.url
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                self._inline = self._sqlite_engine(url, sa.StaticPool)
                threaded = self._sqlite_engine(url, sa.NullPool)
                self._threads = _SqlitePool(threaded, threads, timeout)
        else:
            self._pool = create_async_engine(
                url,
                isolation_level="AUTOCOMMIT",
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=pool_timeout,
            )
        self._own_pool = self._pool is not engine

    @staticmethod
    def _sqlite_engine(url: sa.URL, poolclass: type[sa.Pool]) -> sa.Engine:
        engine = sa.create_engine(
            url.set(drivername="sqlite"),
            connect_args={"check_same_thread": False},
            isolation_level="AUTOCOMMIT",
            poolclass=poolclass,
        )
        on_connect(engine, "query_only=ON")
        return engine

    def connect(self) -> AbstractAsyncContextManager[Reads]:
        """`async with reader.connect() as conn:` gives a connection for any read."""
        if self._threads is not None:
            return _ThreadReads(self._threads)
        return self._pooled()

    def point(self) -> AbstractAsyncContextManager[Reads]:
        """A connection for point lookups by key only: inline on SQLite (see the module)."""
        if self._inline is not None:
            if self._shared is None:
                self._shared = _InlineReads(self._inline.connect())
            return self._shared
        return self._pooled()

    def _pooled(self) -> AbstractAsyncContextManager[Reads]:
        if self._pool.dialect.driver == "asyncpg":
            return _PooledReads(self._pool, self.timeout)
        return self._pool.connect()

    async def dispose(self) -> None:
        if self._shared is not None:
            self._shared._connection.close()
            self._shared = None
        if self._inline is not None:
            self._inline.dispose()
        if self._threads is not None:
            await asyncio.to_thread(self._threads.close)
        if self._own_pool:
            await self._pool.dispose()
