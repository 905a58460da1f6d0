"""The console's pages. Each reads and acts through the API (`session.api`) as the
signed-in person; what the API refuses is shown on a page with its reason (`layout.refused`)."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Request, Response, Router, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

import tether
from tether._version import __version__
from tether.server.console import apps, control, devices
from tether.server.console.layout import (
    OPEN,
    PAGE,
    SignedOut,
    posted,
    refused,
    render,
    signed_in,
    to_sign_in,
)
from tether.server.console.session import (
    SESSION_LIFETIME,
    Session,
    api,
    check_csrf,
    end_session,
    pre_session_csrf,
    session_of,
    start_session,
    with_pre_session_csrf,
)

_LOCAL = re.compile(r"/(?!/)[!-\[\]-~]*")
"""A path of this site: printable, no spaces, controls or backslashes (which browsers drop or
turn into slashes), and not `//host`."""


def _local(target: str) -> str:
    """`target` when it is a page of this console, else the overview (no open redirect)."""
    return target if _LOCAL.fullmatch(target) else "/"


def _sign_in_page(
    request: Request[Any, Any, Any], error: str | None = None, after: str = "/"
) -> Response[Any]:
    """The sign-in form (with what went wrong, and the page to go to after), and where to go
    without a browser."""
    csrf = pre_session_csrf(request)
    url = str(request.base_url).rstrip("/")
    status = 401 if error else 200
    page = render("sign_in.html", None, status, csrf=csrf, error=error, url=url, after=after)
    return with_pre_session_csrf(request, page, csrf)


@get("/", opt=OPEN, include_in_schema=False)
async def overview(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """The fleet at a glance; the sign-in form for someone signed out (JSON for a client
    that asks for it)."""
    if request.accept.best_match(["text/html", "application/json"]) == "application/json":
        return Response(
            {"name": "tether", "version": __version__, "api": "/api/v1", "docs": "/api/v1/docs"},
            media_type="application/json",
        )
    session = await session_of(request)
    if session is None:
        return _sign_in_page(request)
    async with api(request, session) as client:
        devices = await client.get("devices", {"limit": 1})
        online = await client.get("devices", {"limit": 1, "online": "true"})
        deployments = await client.get("deployments", {"limit": 100})
        packages = await client.get("packages", {"limit": 1})
        versions = await client.get("updates/installed")
        events = await client.get("events", {"limit": 20})
        waiting = await client.get("pairing/pending") if session.may("pairing", "read") else None
    rollouts = [_rollout(d) for d in deployments["results"] if d["state"] in ("active", "paused")]
    return render(
        "overview.html",
        session,
        devices=devices["total"],
        online=online["total"],
        packages=packages["total"],
        rollouts=rollouts,
        versions=versions,
        events=events["results"],
        waiting=waiting,
    )


@get("/sign-in", opt=OPEN, include_in_schema=False)
async def sign_in_form(request: Request[Any, Any, Any]) -> Response[Any]:
    return _sign_in_page(request, after=_local(request.query_params.get("next", "/")))


@post("/sign-in", opt=OPEN, include_in_schema=False, status_code=303)
async def sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
    """Check the password through the API's own sign-in (its limits included), then keep an
    API token of the person's as the session."""
    form = await check_csrf(request, None)
    after = _local(str(form.get("next", "/")))
    credentials = {
        "organization": str(form.get("organization", "")).strip(),
        "username": str(form.get("username", "")).strip(),
        "password": str(form.get("password", "")),
    }
    try:
        async with api(request) as anonymous:
            signed_in = await anonymous.post(
                "auth/token", {"grant_type": "password", **credentials}
            )
        async with api(request, signed_in["access_token"]) as client:
            made = await client.post(
                "tokens",
                {
                    "name": f"console session ({socket.gethostname()})",
                    "expires_in": SESSION_LIFETIME,
                },
            )
            await client.post("auth/logout", {"refresh_token": signed_in["refresh_token"]})
    except tether.RateLimitError as exc:
        return _sign_in_page(request, exc.message, after)
    except tether.APIError:
        return _sign_in_page(request, "Wrong organization, user name or password.", after)
    return start_session(request, Redirect(after, status_code=303), made["token"])


@post("/sign-out", opt=OPEN, include_in_schema=False, status_code=303)
async def sign_out(request: Request[Any, Any, Any]) -> Response[Any]:
    session = await session_of(request)
    await check_csrf(request, session)
    if session is not None and session.principal.token_id:
        async with api(request, session) as client:
            await client.delete(f"tokens/{session.principal.token_id}")
    return end_session(Redirect("/sign-in", status_code=303))


@get("/pairing", opt=OPEN, include_in_schema=False)
async def pairing_form(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    session = await signed_in(request)
    return await _pairing_page(request, session)


async def _pairing_page(
    request: Request[Any, Any, Any],
    session: Session,
    status: int = 200,
    approved: dict[str, Any] | None = None,
    error: str | None = None,
) -> Template:
    """The code form, what was approved or refused, and the devices waiting that named this
    organization (for those who may approve them)."""
    waiting: list[dict[str, Any]] = []
    if session.may("pairing", "read"):
        async with api(request, session) as client:
            waiting = await client.get("pairing/pending")
    return render("pairing.html", session, status, approved=approved, error=error, waiting=waiting)


@post("/pairing", opt=OPEN, include_in_schema=False)
async def approve_pairing(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """Approve the code a waiting device shows; the device gets its credentials itself."""
    session, form = await posted(request)
    body = {"user_code": str(form.get("code", "")).strip()}
    if str(form.get("name", "")).strip():
        body["name"] = str(form["name"]).strip()
    async with api(request, session) as client:
        try:
            approved = await client.post("pairing/approve", body)
        except tether.APIError as exc:
            return await _pairing_page(request, session, exc.status, error=exc.message)
    return await _pairing_page(request, session, approved=approved)


@get("/tokens", opt=OPEN, include_in_schema=False)
async def tokens(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    session = await signed_in(request)
    return await _tokens_page(request, session)


async def _tokens_page(
    request: Request[Any, Any, Any],
    session: Session,
    made: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Template:
    async with api(request, session) as client:
        listed = await client.get("tokens", {"limit": 500})
    live = [t for t in listed["results"] if not t.get("revoked_at")]
    return render("tokens.html", session, status, tokens=live, made=made, error=error)


@post("/tokens", opt=OPEN, include_in_schema=False)
async def create_token(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """A new API token, shown once on the page that answers."""
    session, form = await posted(request)
    body = {"name": str(form.get("name", "")).strip(), "read_only": form.get("read_only") == "on"}
    async with api(request, session) as client:
        try:
            made = await client.post("tokens", body)
        except tether.APIError as exc:
            return await _tokens_page(request, session, error=exc.message, status=exc.status)
    return await _tokens_page(request, session, made=made)


@post("/tokens/{token_id:str}/revoke", opt=OPEN, include_in_schema=False)
async def revoke_token(
    request: Request[Any, Any, Any], token_id: FromPath[str]
) -> Response[Any] | Template:
    session, _ = await posted(request)
    async with api(request, session) as client:
        await client.delete(f"tokens/{token_id}")
    if token_id == session.principal.token_id:
        return end_session(Redirect("/sign-in", status_code=303))
    return Redirect("/tokens", status_code=303)


@get("/updates", opt=OPEN, include_in_schema=False)
async def updates(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """Package versions with their signature state, and rollouts with their progress."""
    session = await signed_in(request)
    async with api(request, session) as client:
        versions = await client.get("packages", {"limit": 200})
        rollouts = await client.get("deployments", {"limit": 200})
    shown = [_rollout(d) for d in rollouts["results"]]
    return render("updates.html", session, versions=versions, rollouts=shown)


def _rollout(deployment: dict[str, Any]) -> dict[str, Any]:
    """A deployment with its failure rate beside the threshold that aborts it."""
    counts = deployment["counts"]
    reported = counts.get("installed", 0) + counts.get("failed", 0)
    rate = counts.get("failed", 0) / reported if reported else None
    return deployment | {"failure_rate": rate, "health": "failing" if rate else "healthy"}


@post("/updates/{deployment_id:str}/{action:str}", opt=OPEN, include_in_schema=False)
async def change_rollout(
    request: Request[Any, Any, Any], deployment_id: FromPath[str], action: FromPath[str]
) -> Response[Any] | Template:
    """Pause, resume or abort a rollout, or stage it: offer it to a new share of the fleet."""
    session, form = await posted(request)
    if action == "stage":
        change: dict[str, Any] = {"percentage": _number(form.get("percentage"), 100.0)}
    elif action in _STATES:
        change = {"state": _STATES[action]}
    else:
        return render("refused.html", session, 404, message=f"No action {action!r}.")
    async with api(request, session) as client:
        await client.call("PATCH", f"deployments/{deployment_id}", json=change)
    return Redirect("/updates", status_code=303)


_STATES = {"pause": "paused", "resume": "active", "abort": "aborted"}


@post("/updates", opt=OPEN, include_in_schema=False)
async def create_rollout(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """Roll a package version out to a share of the fleet, with an optional failure-rate abort
    (given in percent on the form, as a share to the API)."""
    session, form = await posted(request)
    reference, _, version = str(form.get("version", "")).partition(" ")
    body: dict[str, Any] = {
        "reference": reference,
        "version": version,
        "name": str(form.get("name", "")).strip(),
        "percentage": _number(form.get("percentage"), 100.0),
        "min_reports": int(_number(form.get("min_reports"), 10.0)),
    }
    threshold = _number(form.get("failure_threshold"), None)
    if threshold is not None:
        body["failure_threshold"] = threshold / 100
    async with api(request, session) as client:
        await client.post("deployments", body)
    return Redirect("/updates", status_code=303)


def _number(raw: Any, default: float | None) -> Any:
    """A number typed into a form (the API checks its range); `default` when left empty.
    Text that is no number is sent as it is, so the API's own error explains it."""
    text = str(raw or "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        return text


@get("/files", opt=OPEN, include_in_schema=False)
async def files(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """A folder of the organization's file tree: its entries, a page at a time."""
    session = await signed_in(request)
    folder = "/" + request.query_params.get("path", "/").strip("/")
    listing = "files/list" + ("" if folder == "/" else quote(folder))
    async with api(request, session) as client:
        page = await client.get(listing, {"limit": 500})
    crumbs = [("/", "/")]
    for part in [p for p in folder.split("/") if p]:
        crumbs.append((part, crumbs[-1][1].rstrip("/") + "/" + part))
    return render("files.html", session, folder=folder, page=page, crumbs=crumbs)


@post("/files/{op:str}", opt=OPEN, include_in_schema=False)
async def file_task(request: Request[Any, Any, Any], op: FromPath[str]) -> Response[Any] | Template:
    """Move or remove a file or folder (a task on the server, waited for here)."""
    session, form = await posted(request)
    if op not in ("move", "remove"):
        return render("refused.html", session, 404, message=f"No action {op!r}.")
    path = str(form.get("path", ""))
    body: dict[str, Any] = {"op": op, "path": path}
    if op == "move":
        body["target"] = str(form.get("target", ""))
    async with api(request, session) as client:
        task = await client.post("files/tasks", body)
        for _ in range(100):
            if task["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.05)
            task = await client.get(f"files/tasks/{task['id']}")
    if task["status"] == "failed":
        return render("refused.html", session, 409, message=task.get("error") or "failed")
    parent = path.rsplit("/", 1)[0] or "/"
    return Redirect(f"/files?{urlencode({'path': parent})}", status_code=303)


@get("/users", opt=OPEN, include_in_schema=False)
async def users(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """The organization's people; admins create them, change roles, reset passwords."""
    session = await signed_in(request)
    return await _users_page(request, session)


async def _users_page(
    request: Request[Any, Any, Any],
    session: Session,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Template:
    async with api(request, session) as client:
        listed = await client.get("users", {"limit": 500})
    return render(
        "users.html", session, status, users=listed["results"], notice=notice, error=error
    )


@post("/users/{action:str}", opt=OPEN, include_in_schema=False)
async def change_users(
    request: Request[Any, Any, Any], action: FromPath[str]
) -> Response[Any] | Template:
    """Create a user, or change one's role or password, or delete one (admins)."""
    session, form = await posted(request)
    user_id = str(form.get("user", ""))
    async with api(request, session) as client:
        try:
            if action == "create":
                body = {k: str(form.get(k, "")) for k in ("username", "password", "role")}
                made = await client.post("users", body)
                notice = f"{made['username']} can sign in now."
            elif action == "role":
                role = str(form.get("role", ""))
                await client.call("PATCH", f"users/{user_id}", json={"role": role})
                notice = "Role changed."
            elif action == "password":
                password = str(form.get("password", ""))
                await client.call("PATCH", f"users/{user_id}", json={"password": password})
                notice = "Password set; the user's earlier sign-ins have ended."
            elif action == "delete":
                await client.delete(f"users/{user_id}")
                notice = "User deleted."
            else:
                return render("refused.html", session, 404, message=f"No action {action!r}.")
        except tether.APIError as exc:
            return await _users_page(request, session, error=exc.message, status=exc.status)
    return await _users_page(request, session, notice=notice)


@get("/channels", opt=OPEN, include_in_schema=False)
async def channels(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """Listen to a channel, broadcast on it and watch the answers come in (over the page's own
    realtime socket)."""
    session = await signed_in(request)
    return render("channels.html", session)


GROUPS = {"projects": "project", "locations": "location", "zones": "zone"}
"""What divides a fleet: each has a page of its own, with its devices."""


@get("/groups/{plural:str}", opt=OPEN, include_in_schema=False)
async def groups(
    request: Request[Any, Any, Any], plural: FromPath[str]
) -> Response[Any] | Template:
    """Projects, locations or zones, with a form to add one."""
    session = await signed_in(request)
    kind = GROUPS.get(plural)
    if kind is None:
        return render("missing.html", session, 404, what="page")
    async with api(request, session) as client:
        listed = await client.get(plural, {"limit": 500})
    return render("groups.html", session, plural=plural, kind=kind, items=listed["results"])


@get("/groups/{plural:str}/{item_id:str}", opt=OPEN, include_in_schema=False)
async def group(
    request: Request[Any, Any, Any], plural: FromPath[str], item_id: FromPath[str]
) -> Response[Any] | Template:
    """One project, location or zone, and its devices."""
    session = await signed_in(request)
    kind = GROUPS.get(plural)
    if kind is None:
        return render("missing.html", session, 404, what="page")
    async with api(request, session) as client:
        try:
            item = await client.get(f"{plural}/{item_id}")
        except tether.NotFoundError:
            return render("missing.html", session, 404, what=kind)
        if kind == "project":
            members = await client.get(f"projects/{item_id}/devices", {"limit": PAGE})
        else:
            members = await client.get("devices", {f"{kind}_id": item_id, "limit": PAGE})
    return render("group.html", session, plural=plural, kind=kind, item=item, members=members)


@post("/groups/{plural:str}", opt=OPEN, include_in_schema=False)
async def add_group(
    request: Request[Any, Any, Any], plural: FromPath[str]
) -> Response[Any] | Template:
    session, form = await posted(request)
    if GROUPS.get(plural) is None:
        return render("missing.html", session, 404, what="page")
    async with api(request, session) as client:
        await client.post(plural, {"name": str(form.get("name", "")).strip()})
    return Redirect(f"/groups/{plural}", status_code=303)


@post("/groups/{plural:str}/{item_id:str}/delete", opt=OPEN, include_in_schema=False)
async def delete_group(
    request: Request[Any, Any, Any], plural: FromPath[str], item_id: FromPath[str]
) -> Response[Any] | Template:
    session, _ = await posted(request)
    if GROUPS.get(plural) is None:
        return render("missing.html", session, 404, what="page")
    async with api(request, session) as client:
        await client.delete(f"{plural}/{item_id}")
    return Redirect(f"/groups/{plural}", status_code=303)


router = Router(
    "/",
    route_handlers=[
        overview,
        sign_in_form,
        sign_in,
        sign_out,
        pairing_form,
        approve_pairing,
        tokens,
        create_token,
        revoke_token,
        updates,
        change_rollout,
        create_rollout,
        files,
        file_task,
        users,
        change_users,
        groups,
        group,
        add_group,
        delete_group,
        channels,
        *devices.handlers,
        *control.handlers,
        *apps.handlers,
    ],
    exception_handlers={SignedOut: to_sign_in, tether.APIError: refused},
)
"""The console's pages; a page that needs a session sends the signed-out to sign in, and
what the API refuses is said on a page."""
