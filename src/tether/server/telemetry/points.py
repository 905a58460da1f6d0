"""Telemetry points: how a value is stored (a number in `num`, anything else as JSON text in
`value`) and read back, and the paths and device every telemetry route shares. Ingest, queries
and retention each have a module of their own beside this one."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from tether._values import value_problem
from tether.server.db.reads import Reads
from tether.server.identity.scope import resolve_scope, scoped_paths
from tether.server.resources.kinds import KINDS, load

_EXACT = 2**53
"""Integers beyond this lose precision as floats: they are kept as text only."""


class Reading(msgspec.Struct):
    ts: float
    value: Any


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


def paths(suffix: str) -> list[str]:
    return scoped_paths(f"/devices/{{id:str}}/telemetry{suffix}")


async def scoped_device(conn: Reads, request: Request[Any, Any, Any]) -> tuple[str, str]:
    """The device of the path, in the caller's scope (404 otherwise): its org and id."""
    org_id, project_id = await resolve_scope(conn, request)
    row = await load(conn, KINDS["device"], org_id, project_id, request.path_params["id"])
    return org_id, row.id
