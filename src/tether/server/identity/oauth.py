"""OAuth 2.0 for registered apps: the authorization-code grant with PKCE (RFC 6749 §4.1 and
RFC 7636, as OAuth 2.1 keeps them).

An app becomes an OAuth client when its document lists `redirect_uris` (admins change apps).
A person signed in to the console is shown what the app asks for and approves it; the console
asks `POST /oauth/authorize` for a code as that person and sends the browser back to the app
with the code and the app's `state`. The app exchanges the code once, with its PKCE verifier,
at `POST /auth/token` (`grant_type=authorization_code`) for an access token and a rotating
refresh token that act as that person: read-only when the app asked for `read` (the default),
never as the server operator. Only S256 challenges are taken; codes live 10 minutes, are stored
hashed and work once (a second use revokes what the first one got). A loopback redirect URI
matches on any port (RFC 8252 §7.3), for apps on the person's own machine.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from typing import Annotated, Any
from urllib.parse import SplitResult, urlencode, urlsplit

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, delete, get, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.db.cascades import Gone, on_delete
from tether.server.db.engine import new_id, utcnow
from tether.server.db.reads import Reads
from tether.server.db.tables import oauth_codes, refresh_tokens, resources
from tether.server.identity.credentials import digest, digest_matches, make_prefixed
from tether.server.identity.policy import allow
from tether.server.identity.revocations import Revocations
from tether.server.identity.scope import principal_of
from tether.server.identity.sessions import (
    TokenResponse,
    issue_session,
    revoke_family,
    user_principal,
)
from tether.server.problems import Problem, not_found
from tether.server.state import ServerState, Tether

CODE_PREFIX = "tta_"
CODE_TTL = 600
SCOPES = {"read": True, "write": False}
"""What an app may ask for, and whether its tokens are then read-only."""
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_LOOPBACK = frozenset({"127.0.0.1", "[::1]", "localhost"})
_QUERY = (
    *("response_type", "client_id", "redirect_uri", "scope"),
    *("code_challenge", "code_challenge_method"),
)
"""The parameters of an authorization request the API checks (the app's `state` stays with
whoever sends the browser back)."""

Text = Annotated[str, msgspec.Meta(max_length=2000)]


class AuthorizationRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What an app asks for (RFC 6749 §4.1.1 with RFC 7636's challenge)."""

    client_id: Annotated[str, msgspec.Meta(max_length=36)]
    redirect_uri: Text
    response_type: Text = ""
    code_challenge: Text = ""
    code_challenge_method: Text = ""
    scope: Text = "read"
    state: Text | None = None


class Client(msgspec.Struct, omit_defaults=True):
    id: str
    name: str
    read_only: bool = False
    """A read-only app: what it gets through OAuth is read-only too, whatever it asks for."""


class Consent(msgspec.Struct):
    """What the person is asked to approve."""

    client: Client
    redirect_uri: str
    scope: str
    read_only: bool


class Approved(msgspec.Struct):
    redirect_to: str
    """The app's redirect URI with the code and its state: where to send the browser."""


def oauth_error(error: str, description: str, status: int = 400) -> Problem:
    """A problem whose code is the OAuth error code (RFC 6749 §4.1.2.1 and §5.2)."""
    return Problem(status, description, code=error)


_REFUSED = {
    "client_id": "invalid_client",
    "redirect_uri": "invalid_redirect_uri",
    "response_type": "unsupported_response_type",
    "scope": "invalid_scope",
}


def _refused(name: str, rule: str) -> Problem:
    """An authorization request's parameter out of its declared bounds, in OAuth's words."""
    return oauth_error(_REFUSED.get(name, "invalid_request"), f"{name} {rule}.")


def _parsed(uri: str) -> SplitResult | None:
    """`uri` split into its parts, or None when it cannot be a URL (an unclosed `[`, a port
    that is no number or out of range)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises for a malformed or out-of-range port)
    except ValueError:
        return None
    return parts


def redirect_matches(given: str, registered: list[Any]) -> bool:
    """Whether `given` is one of the app's redirect URIs: exactly, or a loopback URI that
    differs only in its port. A URI that does not parse, or has a fragment, never matches."""
    parts = _parsed(given)
    if parts is None or parts.fragment:
        return False
    if given in registered:
        return True
    if parts.scheme != "http" or parts.netloc.rsplit(":", 1)[0] not in _LOOPBACK:
        return False
    for each in registered:
        other = _parsed(str(each))
        if (
            other is not None
            and (other.scheme, other.hostname, other.path, other.query)
            == ("http", parts.hostname, parts.path, parts.query)
            and other.netloc.rsplit(":", 1)[0] in _LOOPBACK
        ):
            return True
    return False


async def _client(reads: Reads, org_id: str, client_id: str, redirect_uri: str) -> Client:
    """The registered app, with the redirect URI checked: the errors (`invalid_client`,
    `invalid_redirect_uri`) a browser must not be sent back to the app with, as its redirect
    URI is not known good. Every other error goes back to the app."""
    row = (
        await reads.execute(
            sa.select(
                resources.c.id, resources.c.name, resources.c.document, resources.c.read_only
            ).where(
                resources.c.id == client_id[:36],
                resources.c.org_id == org_id,
                resources.c.kind == "app",
            )
        )
    ).first()
    if row is None:
        raise oauth_error("invalid_client", "No app of this organization has that client_id.")
    registered = msgspec.json.decode(row.document).get("redirect_uris")
    if not isinstance(registered, list) or not registered:
        raise oauth_error(
            "invalid_client",
            "This app lists no redirect_uris in its document: it is no OAuth client.",
        )
    if not redirect_matches(redirect_uri, registered):
        raise oauth_error("invalid_redirect_uri", "redirect_uri is not one of the app's.")
    return Client(row.id, row.name, bool(row.read_only))


def _checked(data: AuthorizationRequest) -> bool:
    """The rest of the request, checked (errors the app hears about at its redirect URI);
    whether its tokens are to be read-only."""
    if data.response_type != "code":
        raise oauth_error("unsupported_response_type", "response_type must be code.")
    if data.code_challenge_method != "S256" or not _CHALLENGE.match(data.code_challenge):
        raise oauth_error(
            "invalid_request",
            "PKCE is required: code_challenge (43 base64url characters) with "
            "code_challenge_method S256.",
        )
    words = set(data.scope.split())
    if not words or not words <= SCOPES.keys():
        raise oauth_error("invalid_scope", "scope is read, or write.")
    return "write" not in words


def _request_of(request: Request[Any, Any, Any]) -> AuthorizationRequest:
    params = {k: v for k, v in request.query_params.items() if k in _QUERY}
    try:
        return msgspec.convert(params, AuthorizationRequest)
    except msgspec.ValidationError as exc:
        raise oauth_error("invalid_request", str(exc)) from None


@get(
    "/oauth/authorize",
    tags=["oauth"],
    summary="Check an app's authorization request and say what it asks for (the consent page's)",
    opt=allow("app", "read", query=_QUERY, query_refusal=_refused),
)
async def consent(request: Request[Any, Any, Any], tether: Tether) -> Consent:
    query = request.query_params
    async with tether.reader.connect() as reads:
        org_id = principal_of(request).org_id
        client = await _client(
            reads, org_id, query.get("client_id", ""), query.get("redirect_uri", "")
        )
    data = _request_of(request)
    read_only = _checked(data) or client.read_only
    return Consent(client, data.redirect_uri, "read" if read_only else "write", read_only)


@post(
    "/oauth/authorize",
    tags=["oauth"],
    summary="Approve an app's authorization request as the caller: a code for the app",
    status_code=200,
    opt=allow("oauth", "authorize"),
)
async def approve(
    data: JSONBody[AuthorizationRequest], request: Request[Any, Any, Any], tether: Tether
) -> Approved:
    principal = principal_of(request)
    if principal.type != "user":
        raise Problem(403, "Only a person may approve an app.", code="forbidden")
    async with tether.reader.connect() as reads:
        client = await _client(reads, principal.org_id, data.client_id, data.redirect_uri)
    read_only = _checked(data) or principal.read_only or client.read_only
    code_id = new_id()
    code = make_prefixed(CODE_PREFIX, code_id)
    now = utcnow()
    async with tether.engine.begin() as conn:
        await conn.execute(
            oauth_codes.insert().values(
                id=code_id,
                org_id=principal.org_id,
                code_hash=digest(code),
                user_id=principal.id,
                client_id=client.id,
                redirect_uri=data.redirect_uri,
                code_challenge=data.code_challenge,
                read_only=read_only,
                expires_at=now + dt.timedelta(seconds=CODE_TTL),
                created_at=now,
            )
        )
    answer = {"code": code} | ({"state": data.state} if data.state is not None else {})
    joiner = "&" if urlsplit(data.redirect_uri).query else "?"
    return Approved(data.redirect_uri + joiner + urlencode(answer))


def _pkce_matches(verifier: str, challenge: str) -> bool:
    if not _VERIFIER.match(verifier):
        return False
    made = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return hmac.compare_digest(made.decode(), challenge)


REFUSED = "The code is not valid (wrong, expired or used)."


async def exchange(
    conn: AsyncConnection,
    state: ServerState,
    code_id: str,
    code: str,
    client_id: str,
    redirect_uri: str,
    verifier: str,
) -> TokenResponse | None:
    """Spend a code for tokens; None for a wrong, expired, spent or stolen one, which is
    spent all the same (and a spent one presented again ends what it gave): the caller commits,
    then refuses with `invalid_grant`."""
    row = (await conn.execute(sa.select(oauth_codes).where(oauth_codes.c.id == code_id))).first()
    if row is None or not digest_matches(code, row.code_hash):
        return None
    spent = await conn.execute(
        oauth_codes.update()
        .where(oauth_codes.c.id == code_id, oauth_codes.c.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if spent.rowcount != 1:
        if row.family_id:
            await revoke_family(conn, state.revocations, row.family_id)
        return None
    if (
        row.expires_at <= utcnow()
        or row.client_id != client_id
        or row.redirect_uri != redirect_uri
        or not _pkce_matches(verifier, row.code_challenge)
    ):
        return None
    try:
        app = await _client(conn, row.org_id, client_id, redirect_uri)
    except Problem:
        return None
    read_only = bool(row.read_only) or app.read_only
    principal = await user_principal(conn, row.user_id, read_only=read_only)
    if principal is None or principal.org_id != row.org_id:
        return None
    family_id = new_id()
    await conn.execute(
        oauth_codes.update().where(oauth_codes.c.id == code_id).values(family_id=family_id)
    )
    return await issue_session(conn, state, principal, family_id=family_id, client_id=client_id)


class Authorization(msgspec.Struct):
    """One sign-in an app got by a person's leave: until it is revoked or lapses."""

    id: str
    client_id: str
    client_name: str | None
    read_only: bool
    created_at: dt.datetime
    refreshed_at: dt.datetime


_AUTHORIZED = (
    sa.select(
        refresh_tokens.c.family_id,
        refresh_tokens.c.client_id,
        resources.c.name.label("client_name"),
        sa.func.max(sa.case((refresh_tokens.c.read_only.is_(True), 1), else_=0)).label("ro"),
        sa.func.min(refresh_tokens.c.created_at).label("created_at"),
        sa.func.max(refresh_tokens.c.created_at).label("refreshed_at"),
    )
    .join(resources, resources.c.id == refresh_tokens.c.client_id, isouter=True)
    .where(
        refresh_tokens.c.principal_id == sa.bindparam("user_id"),
        refresh_tokens.c.client_id.is_not(None),
    )
    .group_by(refresh_tokens.c.family_id, refresh_tokens.c.client_id, resources.c.name)
    .having(
        sa.func.max(refresh_tokens.c.expires_at)
        > sa.bindparam("now", type_=refresh_tokens.c.expires_at.type)
    )
    .having(sa.func.sum(sa.case((refresh_tokens.c.revoked_at.is_(None), 1), else_=0)) > 0)
    .order_by(sa.func.min(refresh_tokens.c.created_at).desc())
    .limit(200)
)


@get(
    "/oauth/authorizations",
    tags=["oauth"],
    summary="The apps the caller has let act for them, still signed in",
    opt=allow("oauth", "read"),
)
async def authorizations(request: Request[Any, Any, Any], tether: Tether) -> list[Authorization]:
    principal = principal_of(request)
    async with tether.reader.connect() as reads:
        rows = await reads.execute(_AUTHORIZED, {"user_id": principal.id, "now": utcnow()})
        return [
            Authorization(
                r.family_id, r.client_id, r.client_name, bool(r.ro), r.created_at, r.refreshed_at
            )
            for r in rows.all()
        ]


@delete(
    "/oauth/authorizations/{family_id:str}",
    tags=["oauth"],
    summary="Stop an app acting for the caller: that sign-in ends at once",
    opt=allow("oauth", "authorize"),
)
async def revoke_authorization(
    family_id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> None:
    principal = principal_of(request)
    async with tether.engine.begin() as conn:
        found = await conn.execute(
            sa.select(refresh_tokens.c.id)
            .where(
                refresh_tokens.c.family_id == family_id,
                refresh_tokens.c.principal_id == principal.id,
                refresh_tokens.c.client_id.is_not(None),
            )
            .limit(1)
        )
        if found.first() is None:
            raise not_found("authorization")
        await revoke_family(conn, tether.revocations, family_id)


@on_delete("app")
async def _end_sign_ins(gone: Gone) -> None:
    """A deleted app: every sign-in it got through OAuth ends."""
    for client_id in gone.ids:
        await revoke_client(gone.conn, gone.state.revocations, client_id)


async def revoke_client(conn: AsyncConnection, revoked: Revocations, client_id: str) -> None:
    """End every sign-in a deleted app got through OAuth."""
    families = await conn.execute(
        sa.select(refresh_tokens.c.family_id)
        .where(refresh_tokens.c.client_id == client_id, refresh_tokens.c.revoked_at.is_(None))
        .distinct()
    )
    for family_id in families.scalars().all():
        await revoke_family(conn, revoked, family_id)
    await conn.execute(oauth_codes.delete().where(oauth_codes.c.client_id == client_id))


router = Router("/", route_handlers=[consent, approve, authorizations, revoke_authorization])
