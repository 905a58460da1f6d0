"""Pages of results: `{"total": N, "results": [...], "next": URL | None}`.

Lists are cut by keyset (`after` = the last id seen), so a page costs the same however deep
the cursor is and rows added meanwhile are neither skipped nor repeated.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import msgspec
import sqlalchemy as sa
from litestar import Request

from tether.server.db.engine import Reads, fetch, fetch_built
from tether.server.inputs import query_int
from tether.server.problems import invalid

T = TypeVar("T")

PAGING_PARAMS = frozenset({"limit", "after"})


class Page(msgspec.Struct, Generic[T]):
    total: int
    results: list[T]
    next: str | None


def check_query(request: Request[Any, Any, Any]) -> None:
    """Refuse query parameters the route did not declare (`opt=allow(..., query=...)`, which
    the OpenAPI document shows), so a typo is not a silent no-op."""
    known = PAGING_PARAMS | set(request.route_handler.opt.get("query", ()))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise invalid(f"Unknown query parameter(s): {', '.join(unknown)}.", "unknown_parameter")


def page_limit(request: Request[Any, Any, Any], default: int, maximum: int) -> int:
    return query_int("limit", request.query_params.get("limit"), default, 1, maximum)


@functools.lru_cache(maxsize=256)
def _page_statements(
    query: sa.Select[Any], id_column: sa.ColumnElement[str]
) -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
    """The count, first-page and next-page statements of a query, built once per query object
    so that a query kept by its caller skips SQLAlchemy's per-statement cache-key work. The
    first page carries the count on each row (`page_total`, computed once): one round trip."""
    count = sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
    total = count.scalar_subquery().correlate(None).label("page_total")
    first = query.add_columns(total).order_by(id_column).limit(sa.bindparam("page_limit"))
    after = query.where(id_column > sa.bindparam("page_after")).order_by(id_column)
    return count, first, after.limit(sa.bindparam("page_limit"))


def _total(first_page: Sequence[Any]) -> int:
    return int(first_page[0].page_total) if first_page else 0


async def fetch_page(
    conn: Reads,
    request: Request[Any, Any, Any],
    query: sa.Select[Any],
    id_column: sa.ColumnElement[str],
    limit: int,
    params: Mapping[str, Any] | None = None,
    prepared: bool = False,
) -> tuple[int, Sequence[Any], str | None]:
    """Run `query` for one page after the cursor; return the total, the rows and the next URL.

    `params` binds the query's `sa.bindparam`s. A query built once, with a bind parameter for
    every value, is `prepared`: it runs on the driver directly (see `tether.server.db.prepared`);
    one built per request goes through SQLAlchemy, whose cache knows it by its shape."""
    count, first, following = _page_statements(query, id_column)
    after = request.query_params.get("after")
    paged, bound = (following, {"page_after": after}) if after else (first, {})
    bound |= {"page_limit": limit + 1, **(params or {})}
    run = fetch if prepared else fetch_built
    rows = await run(conn, paged, bound)
    total = (await run(conn, count, params))[0][0] if after else _total(rows)
    next_url = None
    if len(rows) > limit:
        rows = rows[:limit]
        params = dict(request.query_params)
        params["after"] = rows[-1].id
        params["limit"] = str(limit)
        next_url = f"{request.url.path}?{urlencode(params)}"
    return total, rows, next_url
