"""The database engine: opening it, migrating it and a few helpers every area uses."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tether.server.tables import metadata, server_state

MIGRATIONS = Path(__file__).parent / "migrations"


def new_id() -> str:
    """A time-ordered UUID (version 7 layout), so ids sort in creation order."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL mode, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


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


async def signing_key(conn: AsyncConnection, configured: str | None) -> str:
    """The token signing key: the configured one, or one generated once and shared via the DB."""
    if configured:
        return configured
    row = await conn.execute(
        sa.select(server_state.c.value).where(server_state.c.key == "signing_key")
    )
    value = row.scalar()
    if value is not None:
        return str(value)
    key = secrets.token_urlsafe(48)
    await conn.execute(server_state.insert().values(key="signing_key", value=key))
    return key
