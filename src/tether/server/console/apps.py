"""The console's apps: registered apps and the apps acting for the person, and the consent page
an app sends a person to (OAuth 2.0 authorization code; the API's `identity.oauth` decides)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

import tether
from tether.server.console.layout import OPEN, posted, render, signed_in
from tether.server.console.session import Session, api


@get("/apps", opt=OPEN, include_in_schema=False)
async def apps(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    session = await signed_in(request)
    return await _apps_page(request, session)


async def _apps_page(
    request: Request[Any, Any, Any],
    session: Session,
    made: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Template:
    """Registered apps, their redirect URIs (OAuth clients), for admins a form to add one, and
    the apps acting for this person, each to stop."""
    async with api(request, session) as client:
        listed = await client.get("apps", {"limit": 500, "sort": "name"})
        authorized = await client.get("oauth/authorizations")
    return render(
        "apps.html",
        session,
        status,
        apps=listed["results"],
        authorized=authorized,
        made=made,
        error=error,
    )


@post("/apps", opt=OPEN, include_in_schema=False)
async def create_app(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """A new app with its redirect URIs (one per line); its API key is shown once."""
    session, form = await posted(request)
    uris = [line.strip() for line in str(form.get("redirect_uris", "")).splitlines()]
    document = {"redirect_uris": [u for u in uris if u]} if any(uris) else {}
    body = {
        "name": str(form.get("name", "")).strip(),
        "document": document,
        "read_only": form.get("read_only") == "on",
    }
    async with api(request, session) as client:
        try:
            made = await client.post("apps", body)
        except tether.APIError as exc:
            return await _apps_page(request, session, error=exc.message, status=exc.status)
    return await _apps_page(request, session, made=made)


@post("/apps/{app_id:str}/delete", opt=OPEN, include_in_schema=False, status_code=303)
async def delete_app(request: Request[Any, Any, Any], app_id: FromPath[str]) -> Response[Any]:
    """Delete an app: its key stops, and every sign-in it got through OAuth ends."""
    session, _ = await posted(request)
    async with api(request, session) as client:
        await client.delete(f"apps/{quote(app_id, safe='')}")
    return Redirect("/apps", status_code=303)


@post("/apps/authorizations/{family_id:str}/revoke", opt=OPEN, include_in_schema=False)
async def revoke_authorization(
    request: Request[Any, Any, Any], family_id: FromPath[str]
) -> Response[Any]:
    """Stop an app acting for this person: its sign-in ends at once."""
    session, _ = await posted(request)
    async with api(request, session) as client:
        await client.delete(f"oauth/authorizations/{quote(family_id, safe='')}")
    return Redirect("/apps", status_code=303)


_BAD_APP = frozenset({"invalid_client", "invalid_redirect_uri"})
"""Refusals shown here: the app's redirect URI is not known good, so nothing goes back there."""


async def _authorization(
    request: Request[Any, Any, Any], session: Session, asked: dict[str, str]
) -> tuple[dict[str, Any] | None, Response[Any] | Template | None]:
    """What the app asks (the API checks it), or where the browser goes instead: a page for
    an unknown app or redirect URI, the app's redirect URI with the error for the rest."""
    params = {k: v for k, v in asked.items() if k != "state"}
    async with api(request, session) as client:
        try:
            return await client.get("oauth/authorize", params), None
        except tether.APIError as exc:
            if exc.status != 400 or exc.code in _BAD_APP:
                return None, render("refused.html", session, exc.status, message=exc.message)
            error = {"error": exc.code, "error_description": exc.message}
            return None, _back_to_app(asked, error)


def _back_to_app(asked: dict[str, str], answer: dict[str, str]) -> Response[Any]:
    """To the app's (checked) redirect URI with `answer` and its state."""
    state = {"state": asked["state"]} if asked.get("state") else {}
    uri = asked["redirect_uri"]
    return Redirect(uri + ("&" if "?" in uri else "?") + urlencode(answer | state), status_code=303)


_ASKED = (
    *("response_type", "client_id", "redirect_uri", "scope", "state"),
    *("code_challenge", "code_challenge_method"),
)


@get("/oauth/authorize", opt=OPEN, include_in_schema=False)
async def authorize(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """The consent page: which app asks to act for the person, and for what."""
    session = await signed_in(request)
    asked = {k: request.query_params[k] for k in _ASKED if k in request.query_params}
    consent, instead = await _authorization(request, session, asked)
    if instead is not None:
        return instead
    return render("authorize.html", session, consent=consent, asked=asked)


@post("/oauth/authorize", opt=OPEN, include_in_schema=False)
async def decide_authorization(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    """Allow (a code for the app) or deny; either way the browser goes back to the app."""
    session, form = await posted(request)
    asked = {k: str(form[k]) for k in _ASKED if k in form}
    _, instead = await _authorization(request, session, asked)
    if instead is not None:
        return instead
    if form.get("decision") != "allow":
        return _back_to_app(asked, {"error": "access_denied", "error_description": "Denied."})
    async with api(request, session) as client:
        approved = await client.post("oauth/authorize", asked)
    return Redirect(approved["redirect_to"], status_code=303)


handlers = [
    apps,
    create_app,
    delete_app,
    revoke_authorization,
    authorize,
    decide_authorization,
]
