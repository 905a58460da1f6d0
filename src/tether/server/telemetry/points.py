"""Telemetry: exactly-once ingest of device measurements, latest values and time-range queries.

A push carries a batch id chosen by the sender. The batch is recorded in the same transaction
as its points, so a batch pushed again (a retry after a lost response, two processes sharing an
outbox) is recognised and stored once. Points go in through the driver's bulk path; the latest
value of each field is kept beside them so "what is the device saying now" is one key lookup.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import sqlite3
import time
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, get, post
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncEngine

from tether._values import field_problem, value_problem
from tether.server.db.cascades import Gone, on_delete
from tether.server.db.engine import bulk_insert, run_on_sqlite_thread, utcnow
from tether.server.db.pages import check_query, next_url
from tether.server.db.prepared import prepare
from tether.server.db.reads import Reads
from tether.server.db.tables import resources, telemetry_batches, telemetry_latest, telemetry_points
from tether.server.identity.policy import allow
from tether.server.identity.scope import resolve_scope, scoped_paths
from tether.server.inputs import (
    MAX_TIME,
    TELEMETRY_BODY,
    cursor_numbers,
    invalid_parameter,
    query_int,
    query_number,
    query_time,
)
from tether.server.problems import Problem, not_found
from tether.server.realtime.events import Event
from tether.server.resources.kinds import KINDS, load
from tether.server.state import Tether

MAX_QUERY_LIMIT = 10_000
_EARLIEST = 946_684_800.0  # 2000-01-01
_FUTURE_SLACK = 86_400.0
_EXACT = 2**53
_POINT_COLUMNS = ("device_id", "field", "ts", "num", "value")
_AGGREGATES = ("avg", "min", "max", "count", "last")

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


class Reading(msgspec.Struct):
    ts: float
    value: Any


class Latest(msgspec.Struct):
    device_id: str
    values: dict[str, Reading]


class Series(msgspec.Struct, omit_defaults=True):
    device_id: str
    field: str
    points: list[Reading]
    next: str | None = None
    every: float | None = None
    agg: str | None = None


def encode_value(value: Any) -> tuple[float | None, str | None] | str:
    """A value as the `num` and `value` columns hold it, or why it cannot be stored."""
    problem = value_problem(value)
    if problem is not None:
        return problem
    if isinstance(value, bool):
        return None, "true" if value else "false"
    if isinstance(value, int):
        return (float(value) if abs(value) < _EXACT else None), str(value)
    if isinstance(value, float):
        return value, None
    return None, msgspec.json.encode(value).decode()


def decode_value(num: float | None, value: str | None) -> Any:
    return num if value is None else msgspec.json.decode(value)


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


def _paths(suffix: str) -> list[str]:
    return scoped_paths(f"/devices/{{id:str}}/telemetry{suffix}")


async def _device(conn: Reads, request: Request[Any, Any, Any]) -> tuple[str, str]:
    """The device of the path, in the caller's scope (404 otherwise): its org and id."""
    org_id, project_id = await resolve_scope(conn, request)
    row = await load(conn, KINDS["device"], org_id, project_id, request.path_params["id"])
    return org_id, row.id


@post(
    _paths(""),
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
        org_id, device_id = await _device(reads, request)
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
        insert: Any
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert

            last_id: Any = sa.func.currval(sa.func.pg_get_serial_sequence("telemetry_points", "id"))
        else:
            from sqlalchemy.dialects.sqlite import insert

            last_id = sa.func.last_insert_rowid()
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

        def transaction(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                stored = write(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT" if stored else "ROLLBACK")
            return stored

        async with engine.connect() as conn:
            return await run_on_sqlite_thread(conn, transaction)
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


_LATEST = sa.select(telemetry_latest).where(telemetry_latest.c.device_id == sa.bindparam("device"))


@get(
    _paths("/latest"),
    tags=["telemetry"],
    summary="The latest value of each field",
    opt=allow("telemetry", "read", target="id", query=("field",), query_many=("field",)),
)
async def latest(request: Request[Any, Any, Any], tether: Tether) -> Latest:
    check_query(request)
    fields = request.query_params.getall("field", [])
    async with tether.reader.connect() as conn:
        _, device_id = await _device(conn, request)
        rows = (await conn.execute(_LATEST, {"device": device_id})).all()
    wanted = set(fields)
    values = {
        r.field: Reading(r.ts / 1_000_000, decode_value(r.num, r.value))
        for r in rows
        if not wanted or r.field in wanted
    }
    return Latest(device_id, values)


MAX_BUCKET = float(MAX_TIME)
"""The widest bucket a query may ask for (`every`): all of time a query may name, so one
bucket can count everything."""


def _query_args(request: Request[Any, Any, Any]) -> dict[str, Any]:
    check_query(request)
    params = request.query_params
    fields = params.getall("field", [])
    if len(fields) != 1:
        raise invalid_parameter("field", "must be given exactly once")
    limit = query_int("limit", params.get("limit"), 1000, 1, MAX_QUERY_LIMIT)
    every = query_number("every", params.get("every"), 0.001, MAX_BUCKET)
    agg = params.get("agg")
    if agg is not None and every is None:
        raise invalid_parameter("agg", "needs every (the bucket width in seconds)")
    if every is not None:
        agg = agg or "avg"
        if agg not in _AGGREGATES:
            raise invalid_parameter("agg", f"must be one of {', '.join(_AGGREGATES)}")
    return {
        "field": fields[0],
        "since": query_time("since", params.get("since")),
        "until": query_time("until", params.get("until")),
        "every": every,
        "agg": agg,
        "limit": limit,
        "after": params.get("after"),
    }


@get(
    _paths(""),
    tags=["telemetry"],
    summary="A field's values over time, raw or per bucket",
    opt=allow(
        "telemetry",
        "read",
        target="id",
        query=("field", "since", "until", "every", "agg", "limit", "after"),
    ),
)
async def query(request: Request[Any, Any, Any], tether: Tether) -> Series:
    async with tether.reader.connect() as conn:
        _, device_id = await _device(conn, request)
        args = _query_args(request)
        if args["every"] is None:
            return await _raw(conn, request, device_id, args)
        return await _buckets(conn, request, device_id, args)


def _range(query: sa.Select[Any], device_id: str, args: dict[str, Any]) -> sa.Select[Any]:
    p = telemetry_points.c
    query = query.where(p.device_id == device_id, p.field == args["field"])
    if args["since"] is not None:
        query = query.where(p.ts >= args["since"])
    if args["until"] is not None:
        query = query.where(p.ts < args["until"])
    return query


async def _raw(
    conn: Reads, request: Request[Any, Any, Any], device_id: str, args: dict[str, Any]
) -> Series:
    p = telemetry_points.c
    query = _range(sa.select(p.id, p.ts, p.num, p.value), device_id, args)
    if args["after"]:
        ts, point_id = cursor_numbers("after", args["after"], 2)
        query = query.where(sa.tuple_(p.ts, p.id) > sa.tuple_(ts, point_id))
    rows = (await conn.execute(query.order_by(p.ts, p.id).limit(args["limit"] + 1))).all()
    following = None
    if len(rows) > args["limit"]:
        rows = rows[: args["limit"]]
        following = next_url(request, f"{rows[-1].ts}:{rows[-1].id}")
    points = [Reading(r.ts / 1_000_000, decode_value(r.num, r.value)) for r in rows]
    return Series(device_id, args["field"], points, following)


async def _buckets(
    conn: Reads, request: Request[Any, Any, Any], device_id: str, args: dict[str, Any]
) -> Series:
    p = telemetry_points.c
    width = max(1, round(args["every"] * 1_000_000))
    bucket = ((p.ts // width) * width).label("bucket")
    if args["after"]:
        (after,) = cursor_numbers("after", args["after"], 1)
        args = args | {"since": max(args["since"] or 0, after + width)}
    agg: Literal["avg", "min", "max", "count", "last"] = args["agg"]
    if agg == "last":
        ranked = _range(
            sa.select(
                bucket,
                p.num,
                p.value,
                sa.func.row_number()
                .over(partition_by=bucket, order_by=(p.ts.desc(), p.id.desc()))
                .label("rank"),
            ),
            device_id,
            args,
        ).subquery()
        query: sa.Select[Any] = (
            sa.select(ranked.c.bucket, ranked.c.num, ranked.c.value)
            .where(ranked.c.rank == 1)
            .order_by(ranked.c.bucket)
        )
    else:
        measure = {
            "avg": sa.func.avg(p.num),
            "min": sa.func.min(p.num),
            "max": sa.func.max(p.num),
            "count": sa.func.count(),
        }[agg]
        query = _range(sa.select(bucket, measure.label("num")), device_id, args)
        query = query.group_by(bucket).order_by(bucket)
        if agg != "count":
            query = query.having(sa.func.count(p.num) > 0)
    rows = (await conn.execute(query.limit(args["limit"] + 1))).all()
    following = None
    if len(rows) > args["limit"]:
        rows = rows[: args["limit"]]
        following = next_url(request, str(rows[-1].bucket))
    points = [
        Reading(
            r.bucket / 1_000_000,
            decode_value(r.num, r.value) if agg == "last" else _number(r.num, agg),
        )
        for r in rows
    ]
    return Series(device_id, args["field"], points, following, args["every"], agg)


def _number(value: Any, agg: str) -> float | int:
    return int(value) if agg == "count" else float(value)


async def prune(engine: AsyncEngine, older_than: dt.datetime) -> int:
    """Delete the points of batches received before `older_than`; returns how many."""
    async with engine.begin() as conn:
        bound = (
            await conn.execute(
                sa.select(sa.func.max(telemetry_batches.c.last_point_id)).where(
                    telemetry_batches.c.received_at < older_than
                )
            )
        ).scalar()
        if bound is None:
            return 0
        deleted = await conn.execute(
            telemetry_points.delete().where(telemetry_points.c.id <= bound)
        )
        await conn.execute(
            telemetry_batches.delete().where(telemetry_batches.c.received_at < older_than)
        )
        return int(deleted.rowcount)


router = Router("/", route_handlers=[push, latest, query])


@on_delete("device")
async def _forget_points(gone: Gone) -> None:
    """A deleted device's telemetry: its points, latest values and the batches it pushed."""
    for table in (telemetry_points, telemetry_latest, telemetry_batches):
        await gone.conn.execute(table.delete().where(table.c.device_id.in_(gone.ids)))
