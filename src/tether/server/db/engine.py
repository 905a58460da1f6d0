"""The database engine: opening it, migrating it and a few helpers every area uses."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tether.server.db.tables import metadata

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


def _time_bits(millis: int) -> int:
    """The leading 48 bits of a version 7 UUID: milliseconds since the Unix epoch."""
    return (millis & ((1 << 48) - 1)) << 80


_last = [0, 0]
"""The millisecond and the 12-bit counter of the last id this process made."""
_ids_lock = threading.Lock()


def new_id() -> str:
    """A time-ordered UUID (version 7 layout), so ids sort in creation order: within one
    millisecond, this process's ids follow a counter (RFC 9562's method 1, seeded at random
    each millisecond with room to count up), so a batch made at once keeps its order."""
    rand = int.from_bytes(os.urandom(10), "big")
    with _ids_lock:
        millis = max(time.time_ns() // 1_000_000, _last[0])
        if millis == _last[0] and _last[1] < 0xFFF:
            counter = _last[1] + 1
        else:
            if millis == _last[0]:
                millis += 1
            counter = rand >> 69 & 0x7FF
        _last[0], _last[1] = millis, counter
    value = _time_bits(millis) | 0x7 << 76 | counter << 64
    value |= 0b10 << 62 | rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def first_id_at(moment: dt.datetime) -> str:
    """The smallest id `new_id` gives at `moment`: what sorts before it was made earlier."""
    return str(uuid.UUID(int=_time_bits(int(moment.timestamp() * 1000))))


class RowView:
    """Attribute access over a dict of column values, shaped like a result row."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def on_connect(engine: sa.Engine, *pragmas: str) -> None:
    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()


SQLITE_NEEDED = (3, 38)
"""For JSON's `->` (document filters) and RETURNING."""


def create_engine(url: str, pool_size: int = 10, pool_timeout: float = 30.0) -> AsyncEngine:
    """The engine for transactions; SQLite gets WAL mode, foreign keys and a busy timeout.

    On SQLite it has one connection: SQLite takes one writer at a time anyway, and writers on
    separate connections find out by polling the lock with sleeps, which cost more than the
    writes. Transactions queue for the connection instead. A PostgreSQL pool has no overflow:
    a connection opened for a burst and closed after it costs a server process fork, far more
    than waiting for a pooled one. A request that waits `pool_timeout` seconds for one gets 503
    with Retry-After (see problems.py)."""
    if url.startswith("sqlite"):
        if sqlite3.sqlite_version_info < SQLITE_NEEDED:
            raise RuntimeError(
                f"Tether on SQLite needs SQLite {'.'.join(map(str, SQLITE_NEEDED))} or newer; "
                f"this Python has {sqlite3.sqlite_version}. Use a Python built with a newer "
                "SQLite, or PostgreSQL (TETHER_DATABASE_URL)."
            )
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=1,
            max_overflow=0,
            pool_timeout=pool_timeout,
        )
        on_connect(engine.sync_engine, "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout)


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
    with warnings.catch_warnings():
        # SQLite's reflection cannot see expression indexes, so Alembic skips comparing them.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
        return list(compare_metadata(context, metadata))


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


async def in_sqlite_transaction(
    engine: AsyncEngine,
    work: Callable[[sqlite3.Connection], T],
    keep: Callable[[T], bool] = lambda _: True,
) -> T:
    """`work(db)` between BEGIN IMMEDIATE and COMMIT (ROLLBACK when it raises, or when `keep`
    says its result is not to be kept), all on the SQLite writer's own thread: one thread hop
    for a whole transaction, holding the single writer no longer than the writing itself."""

    def transaction(db: sqlite3.Connection) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT" if keep(result) else "ROLLBACK")
        return result

    async with engine.connect() as conn:
        return await run_on_sqlite_thread(conn, transaction)


def upsert(conn: AsyncConnection, table: sa.Table) -> Any:
    """The dialect's INSERT, which offers `on_conflict_do_nothing/do_update`."""
    return dialect_insert(conn.dialect.name)(table)


def dialect_insert(dialect: str) -> Any:
    """The `insert` construct of the dialect named (`postgresql` or `sqlite`), for statements
    built once, before any connection."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
