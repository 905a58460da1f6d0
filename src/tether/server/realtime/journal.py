"""The journal: recent events kept in the database, for whoever was not listening.

Every event a process publishes (a device created, a document changed, a deployment paused, a
device's update report...) is written here by that process, in batches off the request path,
and kept for `TETHER_EVENTS_RETENTION_DAYS`. Telemetry pushes and feed entries are not: they
are streams with histories of their own. `GET /api/v1/events` reads the journal newest first,
each event shown only to who may hear it (`policy.may_hear`, the rule the realtime socket
applies), so a page may hold fewer events than asked for.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from typing import Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, get

from tether.server.db.engine import first_id_at, new_id, utcnow
from tether.server.db.pages import Page, Sort, filters_of, list_page, narrowed, page_limit
from tether.server.db.tables import events
from tether.server.identity.policy import allow, heard_types, may_hear
from tether.server.identity.scope import principal_of, resolve_scope, scoped_paths
from tether.server.realtime.events import Event, EventBus
from tether.server.state import ServerState, Tether

logger = logging.getLogger("tether.server")

BATCH = 500
"""Most events written in one statement."""
GATHER = 0.05
"""Seconds the journal lets events gather after the first before it writes them: one write
for a burst, and the writer free for what a device is waiting for."""
MAX_DOCUMENT = 4096
"""Largest document (as JSON) an event keeps; a larger one is kept as its id and name only."""
STREAMS = frozenset({"telemetry"})
"""Event types not kept: each push of a stream would swamp the journal."""
ABOUT_DEVICES = frozenset({"device", "report"})
"""Event types whose object is a device, so `device_id` finds them."""


class JournalEvent(msgspec.Struct):
    id: str
    at: dt.datetime
    type: str
    action: str
    object_id: str
    device_id: str | None
    document: Any


def kept(event: Event) -> bool:
    if event.type in STREAMS:
        return False
    return not (event.type == "feed" and isinstance(event.document, dict))


def _field(document: Any, name: str) -> Any:
    value = document.get(name) if isinstance(document, dict) else getattr(document, name, None)
    return value if isinstance(value, str) else None


def _document(event: Event) -> str | None:
    if event.document is None:
        return None
    encoded = msgspec.json.encode(event.document)
    if len(encoded) > MAX_DOCUMENT:
        doc = event.document
        shown = {name: _field(doc, name) for name in _KEPT}
        encoded = msgspec.json.encode({k: v for k, v in shown.items() if v is not None})
    return encoded.decode()


_KEPT = ("id", "name", "project_id", "device_id", "state")
"""What the journal keeps of a document too large to keep whole."""


def _row(event: Event) -> dict[str, Any]:
    return {
        "id": new_id(),
        "org_id": event.org_id,
        "at": utcnow(),
        "type": event.type,
        "action": event.action,
        "object_id": event.id,
        "device_id": event.id
        if event.type in ABOUT_DEVICES
        else _field(event.document, "device_id"),
        "project_id": event.id if event.type == "project" else _field(event.document, "project_id"),
        "document": _document(event),
    }


async def record(state: ServerState, bus: EventBus) -> None:
    """Write what this process publishes, until cancelled."""
    async with bus.subscribe() as queue:
        while True:
            batch = [await queue.get()]
            await asyncio.sleep(GATHER)
            while len(batch) < BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            rows = [_row(event) for event in batch if kept(event)]
            if not rows:
                continue
            try:
                async with state.engine.begin() as conn:
                    await conn.execute(events.insert(), rows)
            except Exception:
                logger.exception("writing %d events to the journal failed", len(rows))


async def prune(state: ServerState) -> int:
    """Forget events older than the retention."""
    cutoff = utcnow() - dt.timedelta(days=state.settings.events_retention_days)
    async with state.engine.begin() as conn:
        gone = await conn.execute(events.delete().where(events.c.id < first_id_at(cutoff)))
    return gone.rowcount or 0


NEWEST_FIRST = Sort(None, descending=True)
_FILTERS = ("type", "device_id", "object_id")


@functools.cache
def _heard(types: frozenset[str], movements: bool) -> sa.Select[Any]:
    """The journal of an organization (`org_id`), narrowed to the event types a caller may
    hear (`policy.heard_types`)."""
    heard: sa.ColumnElement[bool] = events.c.type.in_([sa.literal(t) for t in sorted(types)])
    if movements:
        heard = sa.or_(heard, events.c.type.like("location.%"), events.c.type.like("project.%"))
    return sa.select(events).where(events.c.org_id == sa.bindparam("org_id"), heard)


def _shown(principal: Any) -> Any:
    def shape(row: Any) -> JournalEvent | None:
        document = None if row.document is None else msgspec.json.decode(row.document)
        if not may_hear(principal, row.type, row.object_id, document):
            return None
        return JournalEvent(
            row.id, row.at, row.type, row.action, row.object_id, row.device_id, document
        )

    return shape


@get(
    scoped_paths("/events"),
    tags=["events"],
    summary="Recent events, newest first: what changed in the organization",
    opt=allow("event", "read", query=_FILTERS),
)
async def recent(request: Request[Any, Any, Any], tether: Tether) -> Page[JournalEvent]:
    limit = page_limit(request, tether.settings)
    principal = principal_of(request)
    given = filters_of(request, _FILTERS)
    if principal.type == "device":
        given["device_id"] = principal.id
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request)
        if project_id is not None:
            given["project_id"] = project_id
        page = await list_page(
            reads,
            request,
            narrowed(_heard(*heard_types(principal)), events, tuple(sorted(given))),
            events.c.id,
            limit,
            _shown(principal),
            {"org_id": org_id, **given},
            NEWEST_FIRST,
        )
    return Page(page.total, [e for e in page.results if e is not None], page.next)


router = Router("/", route_handlers=[recent])
