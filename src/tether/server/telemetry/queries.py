"""Reading telemetry back: each field's latest value, and a field's values over a time range,
raw (paged by a cursor) or one aggregate per bucket."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, get

from tether.server.db.pages import next_url
from tether.server.db.reads import Reads
from tether.server.db.tables import telemetry_latest, telemetry_points
from tether.server.identity.policy import allow
from tether.server.inputs import (
    MAX_TIME,
    cursor_numbers,
    invalid_parameter,
    query_int,
    query_number,
    query_time,
)
from tether.server.state import Tether
from tether.server.telemetry.points import Reading, decode_value, paths, scoped_device

MAX_QUERY_LIMIT = 10_000
_AGGREGATES = ("avg", "min", "max", "count", "last")


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


_LATEST = sa.select(telemetry_latest).where(telemetry_latest.c.device_id == sa.bindparam("device"))


@get(
    paths("/latest"),
    tags=["telemetry"],
    summary="The latest value of each field",
    opt=allow("telemetry", "read", target="id", query=("field",), query_many=("field",)),
)
async def latest(request: Request[Any, Any, Any], tether: Tether) -> Latest:
    fields = request.query_params.getall("field", [])
    async with tether.reader.connect() as conn:
        _, device_id = await scoped_device(conn, request)
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
    paths(""),
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
        _, device_id = await scoped_device(conn, request)
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


router = Router("/", route_handlers=[latest, query])
