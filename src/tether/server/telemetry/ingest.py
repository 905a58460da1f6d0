"""Telemetry ingest, exactly once. A push carries a batch id chosen by the sender. The batch is
recorded in the same transaction as its points, so a batch pushed again (a retry after a lost
response, two processes sharing an outbox) is recognised and stored once. Points go in through
the driver's bulk path; the latest value of each field is kept beside them so "what is the
device saying now" is one key lookup."""

from __future__ import annotations

import functools
import math
import sqlite3
import time
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, post
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncEngine

from tether._values import field_problem
from tether.server.db.engine import bulk_insert, dialect_insert, in_sqlite_transaction, utcnow
from tether.server.db.prepared import prepare
from tether.server.db.tables import resources, telemetry_batches, telemetry_latest, telemetry_points
from tether.server.identity.policy import allow
from tether.server.inputs import TELEMETRY_BODY
from tether.server.problems import Problem, not_found
from tether.server.realtime.events import Event
from tether.server.state import Tether
from tether.server.telemetry.points import decode_value, encode_value, paths, scoped_device

_EARLIEST = 946_684_800.0  # 2000-01-01
_FUTURE_SLACK = 86_400.0
_POINT_COLUMNS = ("device_id", "field", "ts", "num", "value")

BatchId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class TelemetryEntry(msgspec.Struct, forbid_unknown_fields=True):
    ts: float
    values: dict[str, Any]


class TelemetryPush(msgspec.Struct, forbid_unknown_fields=True):
    """One batch: committed entries, each a time (Unix seconds) and the values of its fields."""

    batch: BatchId
    entries: list[TelemetryEntry]


class PushResult(msgspec.Struct):
    batch: str
    points: int
    duplicate: bool


def _points(
    device_id: str, entries: list[TelemetryEntry], now: float
) -> tuple[list[tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    """Rows to insert and, per field, the newest row; 422 naming every bad entry."""
    rows: list[tuple[Any, ...]] = []
    newest: dict[str, tuple[Any, ...]] = {}
    problems: list[dict[str, Any]] = []
    latest_allowed = now + _FUTURE_SLACK
    good_names: set[str] = set()
    for index, entry in enumerate(entries):
        ts = entry.ts
        if not (math.isfinite(ts) and _EARLIEST <= ts <= latest_allowed):
            problems.append({"index": index, "reason": "ts must be Unix seconds, 2000 to now"})
            continue
        if not entry.values:
            problems.append({"index": index, "reason": "an entry needs at least one value"})
            continue
        micros = round(ts * 1_000_000)
        for field, value in entry.values.items():
            if field not in good_names:
                bad_name = field_problem(field)
                if bad_name:
                    problems.append({"index": index, "field": field[:80], "reason": bad_name})
                    continue
                good_names.add(field)
            if type(value) is float and math.isfinite(value):
                stored: tuple[float | None, str | None] | str = (value, None)
            else:
                stored = encode_value(value)
            if isinstance(stored, str):
                problems.append({"index": index, "field": field, "reason": stored})
                continue
            row = (device_id, field, micros, stored[0], stored[1])
            rows.append(row)
            known = newest.get(field)
            if known is None or micros >= known[2]:
                newest[field] = row
    if problems:
        raise Problem(
            422,
            f"{len({p['index'] for p in problems})} entries cannot be stored; nothing was.",
            code="invalid_telemetry",
            extra={"errors": problems[:100]},
        )
    return rows, newest


@post(
    paths(""),
    tags=["telemetry"],
    summary="Push a batch of telemetry entries",
    status_code=200,
    opt=allow("telemetry", "push", target="id"),
    request_max_body_size=TELEMETRY_BODY,
)
async def push(
    request: Request[Any, Any, Any], tether: Tether, data: JSONBody[TelemetryPush]
) -> PushResult:
    count = sum(len(entry.values) for entry in data.entries)
    limit = tether.settings.telemetry_max_points
    if count > limit:
        raise Problem(
            413,
            f"A push may carry at most {limit} points; this has {count}.",
            code="too_many_points",
        )
    async with tether.reader.point() as reads:
        org_id, device_id = await scoped_device(reads, request)
    rows, newest = _points(device_id, data.entries, time.time())
    stored = await store_batch(tether.engine, device_id, data.batch, rows, newest)
    if stored:
        latest = {
            field: {"ts": row[2] / 1_000_000, "value": decode_value(row[3], row[4])}
            for field, row in newest.items()
        }
        tether.bus.publish(
            Event(
                org_id,
                "telemetry",
                "created",
                device_id,
                {"batch": data.batch, "points": len(rows), "latest": latest},
            )
        )
    return PushResult(data.batch, len(rows), duplicate=not stored)


class _Statements:
    """The statements of a push for one dialect, built once with bind parameters."""

    def __init__(self, dialect: str) -> None:
        insert = dialect_insert(dialect)
        last_id: Any = (
            sa.func.currval(sa.func.pg_get_serial_sequence("telemetry_points", "id"))
            if dialect == "postgresql"
            else sa.func.last_insert_rowid()
        )
        b, r = telemetry_batches.c, resources.c
        self.device = sa.select(r.id).where(r.id == sa.bindparam("device_id"), r.kind == "device")
        self.claim = (
            insert(telemetry_batches)
            .values(
                {c: sa.bindparam(c) for c in ("device_id", "batch_id", "points", "received_at")}
            )
            .values(last_point_id=0)
            .on_conflict_do_nothing()
        )
        self.mark = (
            telemetry_batches.update()
            .where(b.device_id == sa.bindparam("of_device"), b.batch_id == sa.bindparam("of_batch"))
            .values(last_point_id=last_id)
        )
        self.points = telemetry_points.insert().values({c: sa.bindparam(c) for c in _POINT_COLUMNS})
        upsert = insert(telemetry_latest).values({c: sa.bindparam(c) for c in _POINT_COLUMNS})
        self.latest = upsert.on_conflict_do_update(
            index_elements=["device_id", "field"],
            set_={
                "ts": upsert.excluded.ts,
                "num": upsert.excluded.num,
                "value": upsert.excluded.value,
            },
            where=upsert.excluded.ts >= telemetry_latest.c.ts,
        )


@functools.cache
def _statements(dialect: str) -> _Statements:
    return _Statements(dialect)


async def store_batch(
    engine: AsyncEngine,
    device_id: str,
    batch: str,
    rows: list[tuple[Any, ...]],
    newest: dict[str, tuple[Any, ...]],
) -> bool:
    """Store a batch once, in one transaction: False (and nothing written) if this device
    already pushed it; 404 if the device was deleted meanwhile.

    On SQLite the whole transaction, BEGIN to COMMIT, runs in one call on the writer's thread,
    so a batch costs one thread hop and holds the single writer connection no longer than the
    writing itself."""
    claim = {"device_id": device_id, "batch_id": batch, "points": len(rows)}
    mark = {"of_device": device_id, "of_batch": batch}
    statements = _statements(engine.dialect.name)
    if engine.dialect.name == "sqlite":
        dialect = engine.dialect
        find_device, claim_batch, mark_batch, add_points, newest_values = (
            prepare(s, dialect)
            for s in (
                statements.device,
                statements.claim,
                statements.mark,
                statements.points,
                statements.latest,
            )
        )
        if add_points.names != _POINT_COLUMNS:
            raise RuntimeError(f"telemetry points bind {add_points.names}, not {_POINT_COLUMNS}")
        received = {"received_at": utcnow()}

        def write(db: sqlite3.Connection) -> bool:
            if db.execute(find_device.sql, find_device.arguments(claim)).fetchone() is None:
                raise not_found("device")
            if db.execute(claim_batch.sql, claim_batch.arguments(claim | received)).rowcount == 0:
                return False
            if rows:
                db.executemany(add_points.sql, add_points.rows(rows))
                db.execute(mark_batch.sql, mark_batch.arguments(mark))
                by_name = [dict(zip(_POINT_COLUMNS, row, strict=True)) for row in newest.values()]
                db.executemany(
                    newest_values.sql, [newest_values.arguments(values) for values in by_name]
                )
            return True

        return await in_sqlite_transaction(engine, write, keep=bool)
    async with engine.begin() as conn:
        if (await conn.execute(statements.device, claim)).first() is None:
            raise not_found("device")
        claimed = await conn.execute(statements.claim, claim | {"received_at": utcnow()})
        if claimed.rowcount == 0:
            return False
        if rows:
            await bulk_insert(conn, telemetry_points, _POINT_COLUMNS, rows)
            await conn.execute(statements.mark, mark)
            await conn.execute(
                statements.latest,
                [dict(zip(_POINT_COLUMNS, row, strict=True)) for row in newest.values()],
            )
        return True


router = Router("/", route_handlers=[push])
