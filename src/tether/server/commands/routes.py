"""The commands API: send to one device or many, follow, wait, cancel and resend; and, for
a device without a socket, list its pending commands and answer them over HTTP."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import sqlalchemy as sa
from litestar import Request, Response, Router, get, post
from litestar.params import FromPath, JSONBody
from msgspec import Meta
from sqlalchemy.exc import IntegrityError

from tether.server.commands import store
from tether.server.commands.delivery import delivery_of
from tether.server.db.pages import Page, Sort, filters_of, list_page, page_limit
from tether.server.db.reads import Reads
from tether.server.db.tables import command_groups, commands, resources
from tether.server.identity.credentials import Principal
from tether.server.identity.policy import CALLER, allow
from tether.server.identity.scope import principal_of, resolve_scope, scoped_paths
from tether.server.parameters import QUERY, Parameter, check
from tether.server.problems import Problem, invalid, not_found
from tether.server.resources.queries import device_in_scope, reads_installed, selection
from tether.server.state import ServerState, Tether

T = TypeVar("T")
NEWEST_FIRST = Sort(None, descending=True)
OLDEST_FIRST = Sort(None)
MAX_WAIT = 60.0
COALESCE = 0.02
"""Seconds a waiting group read lets further changes gather after the first: a thousand
devices answering at once are one read of the counts, not a thousand."""

_STATE = Parameter(
    Literal[(*store.STATES, "open")],
    "Only commands in this state; open: not ended yet (queued, sent, delivered, in_progress).",
)
_WAIT = Parameter(
    Annotated[float, Meta(ge=0, le=MAX_WAIT)],
    "Seconds to wait for it to end before answering (a long poll, at most 60); 0 answers at once.",
)
_OWN = {
    "state": _STATE,
    "wait": _WAIT,
    "group_id": Parameter(QUERY["device_id"].type, "Only the commands of this group."),
    "name": Parameter(QUERY["name"].type, "Only commands of this name."),
}
_FILTERS = ("device_id", "group_id", "name")
DEVICE_FILTERS = (
    *("name", "location_id", "experience_id", "zone_id", "project_id"),
    *("online", "document", "installed", "desired", "reported", "tags"),
)
"""What a command to many may select devices by: the device list's filters."""


@functools.cache
def _listed(filters: tuple[str, ...], open_only: bool, in_project: bool) -> sa.Select[Any]:
    query = sa.select(commands).where(commands.c.org_id == sa.bindparam("org_id"))
    if in_project:
        query = query.where(commands.c.project_id == sa.bindparam("project_id"))
    if open_only:
        query = query.where(commands.c.state.in_([sa.literal(s) for s in store.OPEN]))
    for name in filters:
        query = query.where(commands.c[name] == sa.bindparam(name))
    return query


async def _page(
    reads: Reads,
    request: Request[Any, Any, Any],
    tether: ServerState,
    org_id: str,
    project_id: str | None,
    given: dict[str, str],
    sort: Sort,
) -> Page[store.CommandOut]:
    state = request.query_params.get("state")
    if state not in (None, "open"):
        given["state"] = state
    query = _listed(tuple(sorted(given)), state == "open", project_id is not None)
    params = {"org_id": org_id, "project_id": project_id, **given}
    limit = page_limit(request, tether.settings)
    return await list_page(reads, request, query, commands.c.id, limit, store.out, params, sort)


def _device_only(principal: Principal, given: dict[str, str]) -> None:
    """A device sees its own commands only."""
    if principal.type == "device":
        given["device_id"] = principal.id


async def _command(
    reads: Any, principal: Principal, org_id: str, project_id: str | None, command_id: str
) -> Any:
    """One command in the caller's scope (a device's own only)."""
    query = sa.select(commands).where(commands.c.id == command_id, commands.c.org_id == org_id)
    row = (await reads.execute(query)).first()
    if (
        row is None
        or (project_id is not None and row.project_id != project_id)
        or (principal.type == "device" and row.device_id != principal.id)
    ):
        raise not_found("command")
    return row


@post(
    scoped_paths("/devices/{id:str}/commands"),
    tags=["commands"],
    summary="Send a command to one device",
    status_code=201,
    opt=allow("command", "send"),
)
async def send(
    id: FromPath[str],
    request: Request[Any, Any, Any],
    tether: Tether,
    data: JSONBody[store.CommandIn],
) -> Response[store.CommandOut]:
    principal = principal_of(request)
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request)
        device = await device_in_scope(reads, org_id, project_id, id)
    try:
        async with tether.engine.begin() as conn:
            kept = await store.kept_key(conn, commands, org_id, data.idempotency_key)
            if kept is not None:
                return Response(store.out(kept), status_code=200)
            rows = await store.insert(
                conn, org_id, [(device.id, device.project_id)], data, store.sender_of(principal)
            )
    except IntegrityError:
        async with tether.engine.begin() as conn:
            kept = await store.kept_key(conn, commands, org_id, data.idempotency_key)
        if kept is None:
            raise
        return Response(store.out(kept), status_code=200)
    delivery_of(tether).changed(rows, "created")
    return Response(store.out(rows[0]), status_code=201)


@post(
    scoped_paths("/commands"),
    tags=["commands"],
    summary="Send a command to many devices: by their ids, or by the device list's filters",
    status_code=201,
    opt=allow("command", "send"),
)
async def send_many(
    request: Request[Any, Any, Any], tether: Tether, data: JSONBody[store.CommandsIn]
) -> Response[store.GroupOut]:
    principal = principal_of(request)
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request)
    if (data.device_ids is None) == (data.filter is None):
        raise invalid("Give device_ids or a filter (one of them).", "invalid")
    params = _filter_params(data.filter or {})
    if reads_installed(params):
        await tether.installed.flush()
    async with tether.reader.connect() as reads:
        devices = await _chosen(reads, org_id, project_id, data, params)
    sender = store.sender_of(principal)
    try:
        async with tether.engine.begin() as conn:
            kept = await store.kept_key(conn, command_groups, org_id, data.idempotency_key)
            if kept is not None:
                return Response(
                    store.group_out(kept, await store.counts_of(conn, kept.id)), status_code=200
                )
            group = await store.insert_group(conn, org_id, project_id, data, sender, len(devices))
            rows = await store.insert(conn, org_id, devices, data, sender, group.id)
    except IntegrityError:
        async with tether.engine.begin() as conn:
            kept = await store.kept_key(conn, command_groups, org_id, data.idempotency_key)
            if kept is None:
                raise
            return Response(
                store.group_out(kept, await store.counts_of(conn, kept.id)), status_code=200
            )
    delivery_of(tether).changed(rows, "created")
    return Response(store.group_out(group, {"queued": len(rows)} if rows else {}), status_code=201)


def _filter_params(given: dict[str, Any]) -> dict[str, str]:
    """A command's device filter spelled as the device list's query parameters (an object
    for `document` and `installed`, true or false for `online`), checked like them."""
    unknown = sorted(set(given) - set(DEVICE_FILTERS))
    if unknown:
        raise invalid(
            f"Unknown device filter(s): {', '.join(unknown)}; a filter takes "
            f"{', '.join(DEVICE_FILTERS)}.",
            "invalid",
        )
    params = {}
    for name, value in given.items():
        if isinstance(value, dict | list):
            params[name] = json.dumps(value)
        elif isinstance(value, bool):
            params[name] = "true" if value else "false"
        else:
            params[name] = str(value)
    check(params.items(), DEVICE_FILTERS, _filter_refused)
    return params


def _filter_refused(name: str, rule: str) -> Problem:
    return Problem(
        422,
        f"filter.{name} {rule}.",
        code="invalid",
        extra={"errors": [{"key": f"filter.{name}", "source": "body", "message": rule}]},
    )


async def _chosen(
    reads: Reads,
    org_id: str,
    project_id: str | None,
    data: store.CommandsIn,
    params: dict[str, str],
) -> list[tuple[str, str | None]]:
    """The (device id, project id) pairs a command to many goes to, at most MAX_DEVICES."""
    if data.device_ids is not None:
        wanted = list(dict.fromkeys(data.device_ids))
        query = sa.select(resources.c.id, resources.c.project_id).where(
            resources.c.org_id == org_id,
            resources.c.kind == "device",
            resources.c.id.in_(wanted),
        )
        if project_id is not None:
            query = query.where(resources.c.project_id == project_id)
        found = {row.id: row.project_id for row in (await reads.execute(query)).all()}
        missing = [d for d in wanted if d not in found]
        if missing:
            raise invalid(f"No such device here: {', '.join(missing[:5])}.", "invalid_reference")
        return [(d, found[d]) for d in wanted]
    scope = params.pop("project_id", None) if project_id is None else project_id
    chosen = selection("device", org_id, scope, params)
    ids = chosen.query.with_only_columns(resources.c.id, resources.c.project_id).limit(
        store.MAX_DEVICES + 1
    )
    rows = (await reads.execute(ids, chosen.bound)).all()
    if len(rows) > store.MAX_DEVICES:
        raise invalid(
            f"The filter selects more than {store.MAX_DEVICES} devices; narrow it.", "too_many"
        )
    return [(row.id, row.project_id) for row in rows]


@get(
    scoped_paths("/commands"),
    tags=["commands"],
    summary="Recent commands, newest first (a device: its own)",
    opt=allow(
        "command",
        "read",
        target=CALLER,
        query=("limit", "after", "state", *_FILTERS),
        query_types=_OWN,
    ),
)
async def list_commands(request: Request[Any, Any, Any], tether: Tether) -> Page[store.CommandOut]:
    given = filters_of(request, _FILTERS)
    _device_only(principal_of(request), given)
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request)
        return await _page(reads, request, tether, org_id, project_id, given, NEWEST_FIRST)


@get(
    scoped_paths("/devices/{id:str}/commands"),
    tags=["commands"],
    summary="A device's commands, oldest first: its queue (state=open: what it still has to do)",
    opt=allow("command", "read", target="id", query=("limit", "after", "state"), query_types=_OWN),
)
async def device_commands(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> Page[store.CommandOut]:
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request)
        await device_in_scope(reads, org_id, project_id, id)
        given = {"device_id": id}
        return await _page(reads, request, tether, org_id, project_id, given, OLDEST_FIRST)


@get(
    scoped_paths("/commands/{id:str}"),
    tags=["commands"],
    summary="A command and the time of each state it went through; ?wait=S waits for its end",
    opt=allow("command", "read", target=CALLER, query=("wait",), query_types=_OWN),
)
async def get_command(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> store.CommandOut:
    principal = principal_of(request)

    async def read(conn: Reads, org_id: str, project_id: str | None) -> store.CommandOut:
        return store.out(await _command(conn, principal, org_id, project_id, id))

    return await _long_poll(request, tether, id, read, lambda c: c.state in store.FINAL)


@get(
    scoped_paths("/commands/groups/{id:str}"),
    tags=["commands"],
    summary="A command to many: how many of its devices are in each state; ?wait=S waits for "
    "all to end",
    opt=allow("command", "read", query=("wait",), query_types=_OWN),
)
async def get_group(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> store.GroupOut:
    async def read(conn: Reads, org_id: str, project_id: str | None) -> store.GroupOut:
        query = sa.select(command_groups).where(
            command_groups.c.id == id, command_groups.c.org_id == org_id
        )
        row = (await conn.execute(query)).first()
        if row is None or (project_id is not None and row.project_id != project_id):
            raise not_found("command group")
        return store.group_out(row, await store.counts_of(conn, id))

    return await _long_poll(request, tether, id, read, lambda g: g.done, settle=COALESCE)


async def _long_poll(
    request: Request[Any, Any, Any],
    tether: ServerState,
    key: str,
    read: Callable[[Reads, str, str | None], Awaitable[T]],
    done: Callable[[T], bool],
    settle: float = 0.0,
) -> T:
    """What `read` finds, once `done` says it ended or the request's `wait` seconds passed;
    read again after each change of `key` (and `settle` seconds for more to gather)."""
    deadline = time.monotonic() + float(request.query_params.get("wait") or 0)
    delivery = delivery_of(tether)
    while True:
        async with tether.reader.connect() as conn:
            org_id, project_id = await resolve_scope(conn, request)
            found = await read(conn, org_id, project_id)
        left = deadline - time.monotonic()
        if done(found) or left <= 0 or not await delivery.changes_of(key, left):
            return found
        if settle:
            await asyncio.sleep(min(settle, max(0.0, deadline - time.monotonic())))


@post(
    scoped_paths("/commands/{id:str}/cancel"),
    tags=["commands"],
    summary="Take back a command the device does not have yet (409 once it has it)",
    status_code=200,
    opt=allow("command", "send"),
)
async def cancel(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> store.CommandOut:
    principal = principal_of(request)
    async with tether.engine.begin() as conn:
        org_id, project_id = await resolve_scope(conn, request)
        await _command(conn, principal, org_id, project_id, id)
        row = await store.cancel(conn, org_id, id)
    delivery_of(tether).changed([row], "updated")
    return store.out(row)


@post(
    scoped_paths("/commands/{id:str}/resend"),
    tags=["commands"],
    summary="Send a command again, as a new command to the same device",
    status_code=201,
    opt=allow("command", "send"),
)
async def resend(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> store.CommandOut:
    principal = principal_of(request)
    async with tether.engine.begin() as conn:
        org_id, project_id = await resolve_scope(conn, request)
        old = await _command(conn, principal, org_id, project_id, id)
        again = store.CommandIn(
            name=old.name,
            payload=msgspec.json.decode(old.payload),
            ttl=max(1.0, (old.expires_at - old.created_at).total_seconds()),
            timeout=old.timeout,
        )
        sender = store.sender_of(principal)
        rows = await store.insert(conn, org_id, [(old.device_id, old.project_id)], again, sender)
    delivery_of(tether).changed(rows, "created")
    return store.out(rows[0])


async def _answering(
    request: Request[Any, Any, Any],
    tether: ServerState,
    change: Callable[[store.Answerer], store.DeviceChange],
) -> store.CommandOut:
    """Apply a change to a command (`change(answerer)`): a device's to its own, a person's or
    an app's to any of the organization's (in the caller's project)."""
    principal = principal_of(request)
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request)
        if principal.type != "device":
            await _command(reads, principal, org_id, project_id, request.path_params["id"])
    device_id = principal.id if principal.type == "device" else None
    by = store.Answerer(org_id, device_id)
    return await delivery_of(tether).device_change(change(by))


@post(
    scoped_paths("/commands/{id:str}/ack"),
    tags=["commands"],
    summary="The device has stored the command (delivered); answers the command as it stands",
    status_code=200,
    opt=allow("command", "answer", target=CALLER),
)
async def acknowledge(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> store.CommandOut:
    return await _answering(request, tether, lambda by: store.DeviceChange("ack", by, id))


@post(
    scoped_paths("/commands/{id:str}/progress"),
    tags=["commands"],
    summary="The device reports how far it got (in_progress)",
    status_code=200,
    opt=allow("command", "answer", target=CALLER),
)
async def report_progress(
    id: FromPath[str],
    request: Request[Any, Any, Any],
    tether: Tether,
    data: JSONBody[store.ProgressIn],
) -> store.CommandOut:
    return await _answering(
        request,
        tether,
        lambda by: store.DeviceChange(
            "progress", by, id, progress=store.encoded(data.progress, "progress")
        ),
    )


@post(
    scoped_paths("/commands/{id:str}/result"),
    tags=["commands"],
    summary="The device's answer: succeeded (with a result), failed or rejected (with an error)",
    status_code=200,
    opt=allow("command", "answer", target=CALLER),
)
async def report_result(
    id: FromPath[str],
    request: Request[Any, Any, Any],
    tether: Tether,
    data: JSONBody[store.AnswerIn],
) -> store.CommandOut:
    return await _answering(request, tether, lambda by: store.answer_of(by, id, data))


router = Router(
    "",
    route_handlers=[
        send,
        send_many,
        list_commands,
        device_commands,
        get_group,
        get_command,
        cancel,
        resend,
        acknowledge,
        report_progress,
        report_result,
    ],
)
