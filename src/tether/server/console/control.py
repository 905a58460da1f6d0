"""The console's device control: a device's twin edited as JSON (at the version it was read)
and a command sent from its page, and the fleet's recent commands with each group's counts."""

from __future__ import annotations

import json
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

import tether
from tether.server.commands.store import FINAL, OPEN
from tether.server.console.devices import device_page
from tether.server.console.layout import OPEN as OPEN_PAGE
from tether.server.console.layout import posted, render, signed_in
from tether.server.console.session import api
from tether.server.twin.patches import difference

STATES = ("open", *OPEN, *FINAL)


@post("/devices/{device_id:str}/twin", opt=OPEN_PAGE, include_in_schema=False)
async def edit_desired(
    request: Request[Any, Any, Any], device_id: FromPath[str]
) -> Response[Any] | Template:
    """Make desired what was typed in, if it has not changed since the page showed it: the
    patch is the difference from what was read, sent with `If-Match` of its version."""
    session, form = await posted(request)
    draft = str(form.get("desired", ""))
    try:
        wanted = json.loads(draft)
        version = int(str(form.get("version", "")))
    except ValueError as exc:
        return await device_page(
            request, session, device_id, error=f"Not JSON: {exc}", desired=draft
        )
    if not isinstance(wanted, dict):
        error = "Desired is a JSON object: {...}."
        return await device_page(request, session, device_id, error=error, desired=draft)
    async with api(request, session) as client:
        try:
            twin = await client.get(f"devices/{device_id}/twin")
            if twin["versions"]["desired"] != version:
                raise tether.ConflictError(
                    f"Desired changed since you read it (version {version}, now "
                    f"{twin['versions']['desired']}): here it is as it stands.",
                    status=409,
                    code="conflict",
                )
            patch = difference(twin["desired"], wanted)
            if patch:
                await client.call(
                    "PATCH",
                    f"devices/{device_id}/twin",
                    json={"desired": patch},
                    headers={"If-Match": f'"{version}"'},
                )
        except tether.APIError as exc:
            return await device_page(request, session, device_id, error=exc.message)
    return Redirect(f"/devices/{device_id}#twin", status_code=303)


@post("/devices/{device_id:str}/commands", opt=OPEN_PAGE, include_in_schema=False)
async def send_command(
    request: Request[Any, Any, Any], device_id: FromPath[str]
) -> Response[Any] | Template:
    session, form = await posted(request)
    name = str(form.get("name", "")).strip()
    raw = str(form.get("payload", "")).strip()
    try:
        payload = json.loads(raw) if raw else None
    except ValueError as exc:
        error = f"The payload is not JSON: {exc}"
        return await device_page(request, session, device_id, error=error, payload=raw)
    async with api(request, session) as client:
        try:
            await client.post(f"devices/{device_id}/commands", {"name": name, "payload": payload})
        except tether.APIError as exc:
            return await device_page(request, session, device_id, error=exc.message, payload=raw)
    return Redirect(f"/devices/{device_id}#commands", status_code=303)


@get("/commands", opt=OPEN_PAGE, include_in_schema=False)
async def commands(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """Recent commands across the fleet, newest first, and the counts of each group among
    them (a command sent to many)."""
    session = await signed_in(request)
    state = request.query_params.get("state") or None
    query = {"limit": 100} | ({"state": state} if state in STATES else {})
    async with api(request, session) as client:
        page = await client.get("commands", query)
        group_ids = list(dict.fromkeys(c["group_id"] for c in page["results"] if c["group_id"]))
        groups = [await client.get(f"commands/groups/{g}") for g in group_ids[:20]]
    return render(
        "commands.html",
        session,
        commands=page["results"],
        total=page["total"],
        groups=groups,
        states=STATES,
        state=state,
    )


handlers = [edit_desired, send_command, commands]
