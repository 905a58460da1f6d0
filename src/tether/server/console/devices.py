"""The console's device pages: the fleet list (search, filters, sort, bulk actions) and a
device's own page (latest values, updates, events, files; its document edited, its secret
rotated, the device deleted)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

import tether
from tether.server.console.layout import OPEN, PAGE, posted, render, signed_in
from tether.server.console.session import Api, Session, api
from tether.server.state import TimedCache
from tether.server.twin.patches import leaves


async def _choices(request: Request[Any, Any, Any], session: Session, client: Api) -> Any:
    """The device list's filter choices: locations, projects and installed versions. They
    change far less often than the page is shown, so each session keeps them a few seconds
    rather than asking the API three more times a page; a form the person posts drops them."""
    kept: TimedCache = request.app.state.tether.console_choices
    found = kept.get(session.csrf)
    if found is None:
        found = {
            "locations": (await client.get("locations", {"limit": 200}))["results"],
            "projects": (await client.get("projects", {"limit": 200}))["results"],
            "versions": await client.get("updates/installed"),
        }
        kept.put(session.csrf, found)
    return found


SORTS = {
    "created": "oldest first",
    "-created": "newest first",
    "name": "name, A to Z",
    "-name": "name, Z to A",
}


@get("/devices", opt=OPEN, include_in_schema=False)
async def devices(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """Devices, a page at a time, found by name or by a document field (`field=value`), by
    presence, location, project or installed version, in the order chosen."""
    session = await signed_in(request)
    query = request.query_params
    chosen = {
        name: query.get(name, "").strip()
        for name in ("q", "online", "location", "project", "installed", "sort")
    }
    search = chosen["q"]
    params: dict[str, Any] = {"limit": PAGE}
    if query.get("after"):
        params["after"] = query["after"]
    if chosen["online"] in ("true", "false"):
        params["online"] = chosen["online"]
    if chosen["location"]:
        params["location_id"] = chosen["location"]
    if chosen["sort"] in SORTS:
        params["sort"] = chosen["sort"]
    reference, _, version = chosen["installed"].partition("=")
    if version:
        params[f"installed[{reference}]"] = version
    if "=" in search:
        field, _, value = search.partition("=")
        params[f"document[{field.strip()}]"] = value.strip()
    elif search:
        params["name"] = search
    error = None
    project = chosen["project"]
    listed = f"projects/{quote(project, safe='')}/devices" if project else "devices"
    async with api(request, session) as client:
        try:
            page = await client.get(listed, params)
        except (tether.BadRequestError, tether.NotFoundError) as exc:
            page, error = {"total": 0, "results": [], "next": None}, exc.message
        choices = await _choices(request, session, client)
    following = None
    if page["next"]:
        after = parse_qs(urlsplit(page["next"]).query).get("after", [""])[0]
        following = "/devices?" + urlencode(
            {k: v for k, v in chosen.items() if v} | {"after": after}
        )
    return render(
        "devices.html",
        session,
        page=page,
        search=search,
        presence=chosen["online"],
        chosen=chosen,
        sorts=SORTS,
        location_names={place["id"]: place["name"] for place in choices["locations"]},
        **choices,
        following=following,
        error=error,
    )


@post("/devices", opt=OPEN, include_in_schema=False)
async def bulk(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """Delete the chosen devices, or move them to a location (or out of any)."""
    session, form = await posted(request)
    chosen = form.getall("device") if "device" in form else []
    action = form.get("action", "")
    async with api(request, session) as client:
        for device_id in chosen:
            if action == "delete":
                await client.delete(f"devices/{quote(str(device_id), safe='')}")
            elif action == "move":
                target = {"location_id": form.get("location") or None}
                await client.call("PATCH", f"devices/{quote(str(device_id), safe='')}", json=target)
    back = str(form.get("back") or "")
    return Redirect(back if back.startswith("/devices?") else "/devices", status_code=303)


@get("/devices/{device_id:str}", opt=OPEN, include_in_schema=False)
async def device(
    request: Request[Any, Any, Any], device_id: FromPath[str]
) -> Response[Any] | Template:
    session = await signed_in(request)
    return await device_page(request, session, device_id)


async def device_page(
    request: Request[Any, Any, Any], session: Session, device_id: str, **shown: Any
) -> Response[Any] | Template:
    """A device's page, with what the last action showed (`secret`, `error`, a `draft` of the
    document, of `desired` or of a command's `payload`)."""
    async with api(request, session) as client:
        try:
            found = await client.get(f"devices/{device_id}")
        except tether.NotFoundError:
            return render("missing.html", session, 404, what="device")
        latest = await client.get(f"devices/{device_id}/telemetry/latest")
        updates = await client.get(f"devices/{device_id}/updates")
        events = await client.get("events", {"device_id": device_id, "limit": 20})
        twin = await client.get(f"devices/{device_id}/twin")
        sent = await client.get("commands", {"device_id": device_id, "limit": 20})
        try:
            files = await client.get(f"files/list/devices/{device_id}", {"limit": 100})
        except tether.NotFoundError:
            files = {"total": 0, "results": []}
    status = 422 if shown.get("error") else 200
    document = shown.pop("draft", None) or json.dumps(found["document"], indent=2)
    desired = shown.pop("desired", None) or json.dumps(twin["desired"], indent=2)
    values = sorted(latest["values"].items())
    numeric = [f for f, r in values if _plottable(r["value"])]
    return render(
        "device.html",
        session,
        status,
        device=found,
        latest=values,
        chart_field=numeric[0] if numeric else None,
        document=document,
        updates=updates,
        events=events["results"],
        files=files,
        twin=twin,
        desired=desired,
        pending=leaves(twin["delta"]),
        commands=sent["results"],
        **shown,
    )


def _plottable(value: Any) -> bool:
    """A value the chart can draw: a number, not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@post("/devices/{device_id:str}/document", opt=OPEN, include_in_schema=False)
async def edit_document(
    request: Request[Any, Any, Any], device_id: FromPath[str]
) -> Response[Any] | Template:
    """Replace a device's document with the JSON object typed in."""
    session, form = await posted(request)
    draft = str(form.get("document", ""))
    try:
        document = json.loads(draft)
    except ValueError as exc:
        return await device_page(request, session, device_id, error=f"Not JSON: {exc}", draft=draft)
    if not isinstance(document, dict):
        error = "The document is a JSON object: {...}."
        return await device_page(request, session, device_id, error=error, draft=draft)
    async with api(request, session) as client:
        try:
            await client.call("PATCH", f"devices/{device_id}", json={"document": document})
        except tether.APIError as exc:
            return await device_page(request, session, device_id, error=exc.message, draft=draft)
    return Redirect(f"/devices/{device_id}", status_code=303)


@post("/devices/{device_id:str}/secret", opt=OPEN, include_in_schema=False)
async def rotate_secret(
    request: Request[Any, Any, Any], device_id: FromPath[str]
) -> Response[Any] | Template:
    """Issue the device a new secret (shown once); the old one and its sessions stop."""
    session, _ = await posted(request)
    async with api(request, session) as client:
        rotated = await client.post(f"devices/{device_id}/secret")
    return await device_page(request, session, device_id, secret=rotated["secret"])


@post("/devices/{device_id:str}/delete", opt=OPEN, include_in_schema=False, status_code=303)
async def delete_device(request: Request[Any, Any, Any], device_id: FromPath[str]) -> Response[Any]:
    session, _ = await posted(request)
    async with api(request, session) as client:
        await client.delete(f"devices/{device_id}")
    return Redirect("/devices", status_code=303)


handlers = [devices, bulk, device, delete_device, edit_document, rotate_secret]
