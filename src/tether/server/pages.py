"""Pages of results: `{"total": N, "results": [...], "next": URL | None}`.

Lists are cut by keyset (`after` = the last id seen), so a page costs the same however deep
the cursor is and rows added meanwhile are neither skipped nor repeated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import msgspec
import sqlalchemy as sa
from litestar import Request
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.problems import invalid

T = TypeVar("T")

PAGING_PARAMS = frozenset({"limit", "after"})


class Page(msgspec.Struct, Generic[T]):
    total: int
    results: list[T]
    next: str | None


def check_query(request: Request[Any, Any, Any], allowed: Iterable[str]) -> None:
    """Refuse query parameters the endpoint does not know, so a typo is not a silent no-op."""
    known = PAGING_PARAMS | set(allowed)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise invalid(f"Unknown query parameter(s): {', '.join(unknown)}.", "unknown_parameter")


def page_limit(request: Request[Any, Any, Any], default: int, maximum: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise invalid("limit must be a whole number.") from None
    if not 1 <= limit <= maximum:
        raise invalid(f"limit must be between 1 and {maximum}.")
    return limit


async def fetch_page(
    conn: AsyncConnection,
    request: Request[Any, Any, Any],
    query: sa.Select[Any],
    id_column: sa.ColumnElement[str],
    limit: int,
) -> tuple[int, Sequence[sa.Row[Any]], str | None]:
    """Run `query` for one page after the cursor; return the total, the rows and the next URL."""
    total = (
        await conn.execute(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))
    ).scalar_one()
    after = request.query_params.get("after")
    paged = query
    if after:
        paged = paged.where(id_column > after)
    rows = (await conn.execute(paged.order_by(id_column).limit(limit + 1))).all()
    next_url = None
    if len(rows) > limit:
        rows = rows[:limit]
        params = dict(request.query_params)
        params["after"] = rows[-1].id
        params["limit"] = str(limit)
        next_url = f"{request.url.path}?{urlencode(params)}"
    return total, rows, next_url
