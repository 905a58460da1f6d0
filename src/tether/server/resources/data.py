"""Data items ((group, key) -> JSON value, up to the size setting) and feed entries.

Data items are addressed by group and key, organization-wide or inside a project; `PUT`
creates or replaces. Feeds are resources whose data is an append-only list of JSON entries.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, delete, get, post, put
from litestar.params import FromPath

from tether.server.db.cascades import Gone, on_delete
from tether.server.db.engine import new_id, utcnow
from tether.server.db.pages import Page, filters_of, list_page, narrowed, page_limit
from tether.server.db.tables import data_items, feed_entries
from tether.server.identity.policy import allow
from tether.server.identity.scope import ORG_SCOPE, resolve_scope, scoped_paths, storage_scope
from tether.server.inputs import decode_json, read_bounded
from tether.server.problems import Problem, invalid, not_found
from tether.server.realtime.events import Event
from tether.server.resources.kinds import KINDS, load
from tether.server.state import ServerState, Tether

_SEGMENT = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class DataItemOut(msgspec.Struct):
    group: str
    key: str
    value: Any
    created_at: dt.datetime
    updated_at: dt.datetime
    project_id: str | None = None


class FeedEntryIn(msgspec.Struct, forbid_unknown_fields=True):
    value: Any


class FeedEntryOut(msgspec.Struct):
    id: str
    value: Any
    created_at: dt.datetime


_ITEMS = sa.select(data_items).where(
    data_items.c.org_id == sa.bindparam("org_id"), data_items.c.scope == sa.bindparam("scope")
)
_ENTRIES = sa.select(feed_entries).where(feed_entries.c.feed_id == sa.bindparam("feed_id"))


def _entry_out(row: Any) -> FeedEntryOut:
    return FeedEntryOut(row.id, msgspec.json.decode(row.value), row.created_at)


def _item_out(row: Any) -> DataItemOut:
    return DataItemOut(
        group=row.group,
        key=row.key,
        value=msgspec.json.decode(row.value),
        created_at=row.created_at,
        updated_at=row.updated_at,
        project_id=None if row.scope == ORG_SCOPE else row.scope,
    )


def _check_segment(name: str, value: str) -> None:
    if not value or len(value) > 200:
        raise invalid(f"{name} must be 1 to 200 characters.")


async def _body(request: Request[Any, Any, Any], tether: ServerState) -> tuple[bytes, Any]:
    """A data value or feed entry: JSON up to the size setting, read under the gate that
    bounds how many large bodies the server holds at once."""
    raw = await read_bounded(request, tether.settings.max_data_value, tether.large_bodies)
    if not raw:
        raise Problem(400, "This request needs a JSON body.", code="missing_body")
    return raw, decode_json(raw)


@get(
    scoped_paths("/data"),
    tags=["data"],
    summary="Find data items",
    opt=allow("data", "read", query=("limit", "after", "group", "key")),
)
async def list_items(request: Request[Any, Any, Any], tether: Tether) -> Page[DataItemOut]:
    limit = page_limit(request, tether.settings)
    given = filters_of(request, ("group", "key"))
    query = narrowed(_ITEMS, data_items, tuple(given))
    async with tether.reader.connect() as conn:
        org_id, scope = await storage_scope(conn, request)
        params = {"org_id": org_id, "scope": scope, **given}
        return await list_page(conn, request, query, data_items.c.id, limit, _item_out, params)


@get(
    scoped_paths("/data/{group:str}/{key:str}"),
    tags=["data"],
    summary="Get a data item",
    opt=allow("data", "read"),
)
async def read_item(
    group: FromPath[str], key: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> DataItemOut:
    async with tether.reader.connect() as conn:
        org_id, scope = await storage_scope(conn, request)
        row = (
            await conn.execute(
                sa.select(data_items).where(
                    data_items.c.org_id == org_id,
                    data_items.c.scope == scope,
                    data_items.c.group == group,
                    data_items.c.key == key,
                )
            )
        ).first()
    if row is None:
        raise not_found("data item")
    return _item_out(row)


@put(
    scoped_paths("/data/{group:str}/{key:str}"),
    tags=["data"],
    summary="Create or replace a data item; the body is its JSON value",
    opt=allow("data", "write", raw_body="application/json"),
    request_max_body_size=None,
)
async def put_item(
    group: FromPath[str], key: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> DataItemOut:
    _check_segment("group", group)
    _check_segment("key", key)
    raw, _ = await _body(request, tether)
    now = utcnow()
    async with tether.engine.begin() as conn:
        org_id, scope = await storage_scope(conn, request)
        where = (
            data_items.c.org_id == org_id,
            data_items.c.scope == scope,
            data_items.c.group == group,
            data_items.c.key == key,
        )
        changed = await conn.execute(
            data_items.update().where(*where).values(value=raw.decode(), updated_at=now)
        )
        action = "updated"
        if changed.rowcount == 0:
            action = "created"
            await conn.execute(
                data_items.insert().values(
                    id=new_id(),
                    org_id=org_id,
                    scope=scope,
                    group=group,
                    key=key,
                    value=raw.decode(),
                    created_at=now,
                    updated_at=now,
                )
            )
        row = (await conn.execute(sa.select(data_items).where(*where))).one()
    out = _item_out(row)
    tether.bus.publish(Event(org_id, "data", action, f"{group}/{key}", out))  # type: ignore[arg-type]
    return out


@delete(
    scoped_paths("/data/{group:str}/{key:str}"),
    tags=["data"],
    summary="Delete a data item",
    opt=allow("data", "write"),
)
async def delete_item(
    group: FromPath[str], key: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> None:
    async with tether.engine.begin() as conn:
        org_id, scope = await storage_scope(conn, request)
        gone = await conn.execute(
            data_items.delete().where(
                data_items.c.org_id == org_id,
                data_items.c.scope == scope,
                data_items.c.group == group,
                data_items.c.key == key,
            )
        )
    if gone.rowcount != 1:
        raise not_found("data item")
    tether.bus.publish(Event(org_id, "data", "deleted", f"{group}/{key}", None))


@get(
    scoped_paths("/feeds/{id:str}/data"),
    tags=["feeds"],
    summary="A feed's data, oldest first",
    opt=allow("feed", "read", query=("limit", "after")),
)
async def feed_data(request: Request[Any, Any, Any], tether: Tether) -> Page[FeedEntryOut]:
    limit = page_limit(request, tether.settings)
    async with tether.reader.connect() as conn:
        org_id, project_id = await resolve_scope(conn, request)
        feed = await load(conn, KINDS["feed"], org_id, project_id, request.path_params["id"])
        params = {"feed_id": feed.id}
        return await list_page(
            conn, request, _ENTRIES, feed_entries.c.id, limit, _entry_out, params
        )


@post(
    scoped_paths("/feeds/{id:str}/data"),
    tags=["feeds"],
    summary="Append an entry to a feed",
    opt=allow("feed", "append", raw_body="application/json"),
    request_max_body_size=None,
)
async def append_feed(request: Request[Any, Any, Any], tether: Tether) -> FeedEntryOut:
    _, value = await _body(request, tether)
    try:
        data = msgspec.convert(value, FeedEntryIn)
    except msgspec.ValidationError as exc:
        raise invalid(f"The entry is not valid: {exc}.") from None
    encoded = msgspec.json.encode(data.value).decode()
    entry = FeedEntryOut(new_id(), data.value, utcnow())
    async with tether.engine.begin() as conn:
        org_id, project_id = await resolve_scope(conn, request)
        feed = await load(conn, KINDS["feed"], org_id, project_id, request.path_params["id"])
        await conn.execute(
            feed_entries.insert().values(
                id=entry.id, feed_id=feed.id, value=encoded, created_at=entry.created_at
            )
        )
    tether.bus.publish(Event(org_id, "feed", "updated", feed.id, {"entry": entry}))
    return entry


router = Router(
    "/", route_handlers=[list_items, read_item, put_item, delete_item, feed_data, append_feed]
)


@on_delete("project")
async def _forget_items(gone: Gone) -> None:
    """A deleted project's data items."""
    await gone.conn.execute(data_items.delete().where(data_items.c.scope.in_(gone.ids)))
