"""The twin API: read a device's twin, patch a section (with `If-Match`), its history, a
device's catch-up over HTTP, and how much of the fleet has converged."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from litestar import Request, Router, get, patch
from litestar.params import FromPath, JSONBody
from msgspec import Meta

from tether.server.db.pages import BY_ID, Page, list_page, page_limit
from tether.server.db.reads import Reads
from tether.server.db.tables import twin_changes, twins
from tether.server.identity.policy import allow, decide
from tether.server.identity.scope import principal_of, resolve_scope, scoped_paths
from tether.server.inputs import query_time
from tether.server.parameters import Parameter
from tether.server.problems import invalid
from tether.server.resources.queries import device_in_scope
from tether.server.state import Tether
from tether.server.twin import store
from tether.server.twin.delivery import twin_of

_OWN = {
    "section": Parameter(Literal["desired", "reported", "tags"], "Only changes of this section."),
    "version": Parameter(
        Annotated[int, Meta(ge=0, le=2**31)], "The desired version the device applied last."
    ),
}


async def _device(reads: Reads, request: Request[Any, Any, Any], device_id: str) -> tuple[str, Any]:
    """The caller's organization and the device (404 outside the caller's scope)."""
    org_id, project_id = await resolve_scope(reads, request)
    return org_id, await device_in_scope(reads, org_id, project_id, device_id)


@get(
    scoped_paths("/devices/{id:str}/twin"),
    tags=["twin"],
    summary="A device's twin: desired, reported and tags, their versions, per-key metadata and "
    "the delta (what desired asks that reported does not say yet)",
    opt=allow("twin", "read", target="id"),
)
async def read_twin(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> store.TwinOut:
    async with tether.reader.connect() as reads:
        _, device = await _device(reads, request, id)
        return store.twin_out(id, await store.load(reads, id), device.project_id)


def _if_match(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        raise invalid('If-Match is the version of the section you read, such as "4".', "invalid")
    return int(text)


@patch(
    scoped_paths("/devices/{id:str}/twin"),
    tags=["twin"],
    summary="Change one section by a JSON merge patch (null removes a key): desired or tags "
    "(people and apps), reported (the device); If-Match: the section's version, else 409",
    opt=allow("twin", "write", target="id"),
)
async def patch_twin(
    id: FromPath[str],
    request: Request[Any, Any, Any],
    tether: Tether,
    data: JSONBody[store.TwinPatchIn],
) -> store.TwinOut:
    principal = principal_of(request)
    async with tether.reader.connect() as reads:
        org_id, device = await _device(reads, request, id)
    given = [s for s in store.SECTIONS if getattr(data, s) is not None]
    if len(given) > 1 or not (given or data.clear_when_reported is not None):
        raise invalid("Give one section to change: desired, reported or tags.", "invalid")
    section: store.Section = given[0] if given else "desired"
    if data.report_id is not None and section != "reported":
        raise invalid("report_id goes with a reported patch.", "invalid")
    action = "report" if section == "reported" else "desire"
    decide(principal, "twin", action, id, request.url.path)
    if section == "reported" and data.clear_when_reported is not None:
        raise invalid("clear_when_reported is set by people and apps, not in a report.", "invalid")
    async with tether.engine.begin() as conn:
        twin, changes = await store.change(
            conn,
            org_id,
            device.project_id,
            id,
            section,
            getattr(data, section),
            f"{principal.type}:{principal.id}",
            expected=_if_match(request),
            report_id=data.report_id,
            clear_when_reported=data.clear_when_reported,
        )
    twin_of(tether).changed(org_id, device.project_id, changes)
    return twin


@functools.cache
def _history(section: bool, since: bool, until: bool) -> sa.Select[Any]:
    query = sa.select(twin_changes).where(
        twin_changes.c.device_id == sa.bindparam("device_id"),
        twin_changes.c.org_id == sa.bindparam("org_id"),
    )
    if section:
        query = query.where(twin_changes.c.section == sa.bindparam("section"))
    if since:
        query = query.where(
            twin_changes.c.at >= sa.bindparam("since", type_=twin_changes.c.at.type)
        )
    if until:
        query = query.where(twin_changes.c.at < sa.bindparam("until", type_=twin_changes.c.at.type))
    return query


@get(
    scoped_paths("/devices/{id:str}/twin/changes"),
    tags=["twin"],
    summary="The history of a twin: each change with its patch, the section after it, who "
    "made it and when, oldest first",
    opt=allow(
        "twin",
        "read",
        target="id",
        query=("limit", "after", "section", "since", "until"),
        query_types=_OWN,
    ),
)
async def twin_history(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> Page[store.Change]:
    params = request.query_params
    bound: dict[str, Any] = {"device_id": id}
    for name in ("since", "until"):
        micros = query_time(name, params.get(name))
        if micros is not None:
            bound[name] = dt.datetime.fromtimestamp(micros / 1e6, dt.UTC)
    if "section" in params:
        bound["section"] = params["section"]
    limit = page_limit(request, tether.settings)
    async with tether.reader.connect() as reads:
        org_id, _ = await _device(reads, request, id)
        query = _history("section" in bound, "since" in bound, "until" in bound)
        return await list_page(
            reads,
            request,
            query,
            twin_changes.c.id,
            limit,
            store.change_out,
            bound | {"org_id": org_id},
            BY_ID,
        )


@get(
    scoped_paths("/devices/{id:str}/twin/catch-up"),
    tags=["twin"],
    summary="For a device that applied desired up to `version`: the latest version and one "
    "merge patch to it (or `replace` with the whole desired)",
    opt=allow("twin", "read", target="id", query=("version",), query_types=_OWN),
)
async def catch_up(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> dict[str, Any]:
    since = int(request.query_params.get("version") or 0)
    async with tether.reader.connect() as reads:
        await _device(reads, request, id)
        return await store.catch_up(reads, id, since)


@get(
    scoped_paths("/twins/summary"),
    tags=["twin"],
    summary="How far the fleet has converged: devices whose reported matches desired, and those "
    "with desired keys still pending",
    opt=allow("twin", "read", target=None),
)
async def summary(request: Request[Any, Any, Any], tether: Tether) -> dict[str, int]:
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request)
        query = sa.select(
            sa.func.count().label("twins"),
            sa.func.count().filter(twins.c.pending == 0).label("converged"),
            sa.func.coalesce(sa.func.sum(twins.c.pending), 0).label("pending_keys"),
        ).where(twins.c.org_id == org_id)
        if project_id is not None:
            query = query.where(twins.c.project_id == project_id)
        row = (await reads.execute(query)).one()
    return {
        "twins": row.twins,
        "converged": row.converged,
        "pending": row.twins - row.converged,
        "pending_keys": int(row.pending_keys),
    }


router = Router("", route_handlers=[read_twin, patch_twin, twin_history, catch_up, summary])
