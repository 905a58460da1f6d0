"""Pages of results: `{"total": N, "results": [...], "next": URL | None}`.

Lists are cut by keyset (`after` = the last id seen), so a page costs the same however deep
the cursor is and rows added meanwhile are neither skipped nor repeated. A list sorted by
another column (`Sort`) is cut the same way by that column and the id together, its cursor an
opaque encoding of both.

A page also costs the same however long the list is. Counting every row of a large list on
every page would make a page of 50 devices cost as much as the whole fleet, so `total` is
counted up to `EXACT_UP_TO` rows, in the same round trip as the page: a list that short gets
its exact total. Past that bound the whole list is counted once and the count is kept for
`LONG_COUNT_TTL` seconds, so the total of a long list may lag the rows by that long.
"""

from __future__ import annotations

import base64
import binascii
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import msgspec
import sqlalchemy as sa
from litestar import Request

from tether.server.db.reads import Reads, fetch
from tether.server.inputs import invalid_parameter, query_int
from tether.server.settings import Settings

T = TypeVar("T")

EXACT_UP_TO = 200
"""Lists at most this long get an exact total on every page."""
LONG_COUNT_TTL = 5.0
"""How long the count of a longer list is kept, in seconds."""


class Page(msgspec.Struct, Generic[T]):
    total: int
    results: list[T]
    next: str | None


def page_limit(request: Request[Any, Any, Any], settings: Settings) -> int:
    """The size of the page a list request asks for."""
    return query_int(
        "limit", request.query_params.get("limit"), settings.page_size, 1, settings.max_page_size
    )


def next_url(request: Request[Any, Any, Any], after: str, limit: int | None = None) -> str:
    """The URL of the page after `after`: this request's, with the cursor moved."""
    params = dict(request.query_params)
    params["after"] = after
    if limit is not None:
        params["limit"] = str(limit)
    return f"{request.url.path}?{urlencode(params)}"


@dataclass(frozen=True, eq=False)
class Sort:
    """A list's order: by `column` (then the id, so the order is total), ascending or
    descending. Without a column the list runs by id alone, its cursor the last id itself."""

    column: sa.ColumnElement[Any] | None = None
    descending: bool = False

    def keys(self, id_column: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
        return [id_column] if self.column is None else [self.column, id_column]

    def cursor(self, row: Any, id_column: sa.ColumnElement[Any]) -> str:
        """The `after` of the page that follows `row`."""
        last = getattr(row, id_column.key or "id")
        if self.column is None:
            return str(last)
        encoded = msgspec.json.encode([getattr(row, self.column.key or ""), last])
        return base64.urlsafe_b64encode(encoded).decode().rstrip("=")

    def bound(self, after: str) -> dict[str, Any]:
        """The parameters of a cursor this sort gave; 422 for anything else."""
        if self.column is None:
            return {"page_after_0": after}
        try:
            raw = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4))
            value, last = msgspec.json.decode(raw, type=tuple[str, str])
        except (binascii.Error, ValueError, msgspec.DecodeError):
            raise invalid_parameter("after", "is not a cursor of this list") from None
        return {"page_after_0": value, "page_after_1": last}


BY_ID = Sort()


class _Counts:
    """The counts of one list query, whatever its order: bounded and whole."""

    def __init__(self, query: sa.Select[Any]) -> None:
        unordered = query.order_by(None)
        self.bounded = sa.select(sa.func.count()).select_from(
            unordered.limit(sa.bindparam("count_bound")).subquery()
        )
        self.whole = sa.select(sa.func.count()).select_from(unordered.subquery())


class _Statements:
    """What one list query runs in one order: its first page with a bounded count on each row,
    its first page alone, its later pages, and (shared by every order) its counts."""

    def __init__(
        self, query: sa.Select[Any], id_column: sa.ColumnElement[str], sort: Sort, counts: _Counts
    ) -> None:
        in_row = counts.bounded.scalar_subquery().correlate(None).label("page_total")
        limit: Any = sa.bindparam("page_limit")
        keys = sort.keys(id_column)
        order = [key.desc() if sort.descending else key for key in keys]
        marks = [sa.bindparam(f"page_after_{i}", type_=key.type) for i, key in enumerate(keys)]
        if len(keys) == 1:
            past = keys[0] < marks[0] if sort.descending else keys[0] > marks[0]
        else:
            row, mark = sa.tuple_(*keys), sa.tuple_(*marks)
            past = row < mark if sort.descending else row > mark
        self.first_counted = query.add_columns(in_row).order_by(*order).limit(limit)
        self.first = query.order_by(*order).limit(limit)
        self.after = query.where(past).order_by(*order).limit(limit)
        self.bounded = counts.bounded
        self.whole = counts.whole


_statements: dict[tuple[int, int, Sort], tuple[sa.Select[Any], _Statements]] = {}
_counts: dict[int, tuple[sa.Select[Any], _Counts]] = {}
_long_counts: dict[tuple[Any, ...], tuple[float, int]] = {}


def _statements_of(
    query: sa.Select[Any], id_column: sa.ColumnElement[str], sort: Sort
) -> _Statements:
    key = (id(query), id(id_column), sort)
    found = _statements.get(key)
    if found is None or found[0] is not query:
        counted = _counts.get(id(query))
        if counted is None or counted[0] is not query:
            counted = _counts[id(query)] = (query, _Counts(query))
        found = (query, _Statements(query, id_column, sort, counted[1]))
        _statements[key] = found
    return found[1]


async def _long_total(
    conn: Reads, statements: _Statements, key: tuple[Any, ...], params: Mapping[str, Any]
) -> int:
    """The whole count of a list known to be past the bound, kept for `LONG_COUNT_TTL`."""
    total = int((await fetch(conn, statements.whole, params))[0][0])
    if len(_long_counts) > 10_000:
        _long_counts.clear()
    _long_counts[key] = (time.monotonic() + LONG_COUNT_TTL, total)
    return total


async def list_page(
    conn: Reads,
    request: Request[Any, Any, Any],
    query: sa.Select[Any],
    id_column: sa.ColumnElement[str],
    limit: int,
    shape: Callable[[Any], T],
    params: Mapping[str, Any] | None = None,
    sort: Sort = BY_ID,
) -> Page[T]:
    """One page of `query` in `sort`'s order after the request's cursor, each row made a result
    by `shape`.

    `query` is built once (a module constant, or cached by shape) with an `sa.bindparam` for
    every value, which `params` binds: it runs on the driver directly (see `prepared`)."""
    statements = _statements_of(query, id_column, sort)
    params = dict(params or {})
    key = (id(query), *sorted(params.items()))
    kept = _long_counts.get(key)
    long_total = kept[1] if kept is not None and kept[0] > time.monotonic() else None
    after = request.query_params.get("after")
    bound = {"page_limit": limit + 1, "count_bound": EXACT_UP_TO + 1, **params}
    total: int | None = long_total
    if after:
        rows: Sequence[Any] = await fetch(conn, statements.after, bound | sort.bound(after))
        if total is None:
            counted = params | {"count_bound": EXACT_UP_TO + 1}
            total = int((await fetch(conn, statements.bounded, counted))[0][0])
    elif total is None:
        rows = await fetch(conn, statements.first_counted, bound)
        total = int(rows[0].page_total) if rows else 0
    else:
        rows = await fetch(conn, statements.first, bound)
    if total > EXACT_UP_TO and long_total is None:
        total = await _long_total(conn, statements, key, params)
    following = None
    if len(rows) > limit:
        rows = rows[:limit]
        following = next_url(request, sort.cursor(rows[-1], id_column), limit)
    return Page(total, [shape(row) for row in rows], following)


@functools.cache
def narrowed(query: sa.Select[Any], table: sa.Table, names: tuple[str, ...]) -> sa.Select[Any]:
    """`query` where each named column of `table` equals the parameter of the same name: one
    statement per combination of filters, built once."""
    for name in names:
        query = query.where(table.c[name] == sa.bindparam(name))
    return query


def filters_of(request: Request[Any, Any, Any], names: tuple[str, ...]) -> dict[str, str]:
    """The query parameters among `names` that the request gives, in `names`' order."""
    return {name: request.query_params[name] for name in names if name in request.query_params}
