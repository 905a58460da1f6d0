"""Signing in: the token endpoint.

`POST /api/v1/auth/token` takes one of several grants (password, device, app, refresh_token,
the OAuth device-code grant used by pairing, and the authorization code an app got through
`oauth`) as JSON or as a form (as OAuth clients send it), and answers a short-lived access
token, a refresh token and the identity (`sessions`). Failures say only "invalid credentials"
and are rate limited per identity.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, post
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.db.engine import utcnow
from tether.server.db.reads import Reads
from tether.server.db.tables import organizations, refresh_tokens, users
from tether.server.identity.authn import USER_PRINCIPAL, principal_for_secret, unauthenticated
from tether.server.identity.credentials import (
    REFRESH_TOKEN_PREFIX,
    Principal,
    digest_matches,
    split_prefixed,
    verify_password,
)
from tether.server.identity.oauth import CODE_PREFIX, REFUSED, exchange, oauth_error
from tether.server.identity.pairing import claim
from tether.server.identity.sessions import (
    TokenResponse,
    issue_session,
    resource_principal,
    revoke_family,
    user_principal,
)
from tether.server.identity.signin_limits import client_address, secret_key
from tether.server.inputs import SIGN_IN_BODY
from tether.server.problems import Problem
from tether.server.state import ServerState, Tether

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A grant: fields used depend on `grant_type`."""

    grant_type: Literal[
        "password",
        "device",
        "app",
        "refresh_token",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:device_code",
    ]
    username: Text | None = None
    password: Secret | None = None
    organization: Text | None = None
    device_id: Text | None = None
    device_secret: Secret | None = None
    app_id: Text | None = None
    api_key: Secret | None = None
    refresh_token: Secret | None = None
    device_code: Secret | None = None
    code: Secret | None = None
    code_verifier: Secret | None = None
    redirect_uri: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = None
    client_id: Text | None = None


async def _password_grant(conn: Reads, data: JSONBody[TokenRequest]) -> Principal | None:
    row = (
        await conn.execute(
            sa.select(users.c.password_hash, *USER_PRINCIPAL.selected_columns)
            .join(organizations, organizations.c.id == users.c.org_id)
            .where(users.c.username == data.username, organizations.c.name == data.organization)
        )
    ).first()
    if not await verify_password(data.password or "", row.password_hash if row else None):
        return None
    return None if row is None else Principal.of_user(row)


async def _refresh_grant(
    conn: AsyncConnection, state: ServerState, token: str
) -> tuple[Principal, str, str | None] | None:
    """Rotate a refresh token: the old one is spent, and whoever presents it again revokes its
    whole family (RFC 9700, refresh token reuse detection). Answers the principal (narrowed as
    the sign-in was), the family and the app it was issued to."""
    token_id = split_prefixed(REFRESH_TOKEN_PREFIX, token)
    if token_id is None:
        return None
    row = (
        await conn.execute(sa.select(refresh_tokens).where(refresh_tokens.c.id == token_id))
    ).first()
    if row is None or not digest_matches(token, row.token_hash) or row.expires_at <= utcnow():
        return None
    spent = await conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.id == token_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if spent.rowcount != 1:
        await revoke_family(conn, state.revocations, row.family_id)
        return None
    principal: Principal | None
    if row.principal_type == "user" and row.client_id:
        principal = await user_principal(conn, row.principal_id, read_only=bool(row.read_only))
    elif row.principal_type == "user":
        principal = await user_principal(conn, row.principal_id)
    else:
        principal = await resource_principal(conn, row.principal_id, row.principal_type)
    return None if principal is None else (principal, row.family_id, row.client_id)


def _require(data: JSONBody[TokenRequest], *names: str) -> None:
    missing = [name for name in names if not getattr(data, name)]
    if missing:
        raise Problem(422, f"The {data.grant_type} grant needs {', '.join(missing)}.")


@post(
    "/auth/token",
    opt={"exclude_from_auth": True, "form_body": True},
    request_max_body_size=SIGN_IN_BODY,
    status_code=200,
    summary="Exchange credentials for an access token",
)
async def token(
    data: JSONBody[TokenRequest], request: Request[Any, Any, Any], tether: Tether
) -> TokenResponse:
    if data.grant_type == "urn:ietf:params:oauth:grant-type:device_code":
        _require(data, "device_code")
        return await claim(tether, data.device_code or "")
    if data.grant_type == "authorization_code":
        _require(data, "code", "code_verifier", "redirect_uri", "client_id")
        code_id = split_prefixed(CODE_PREFIX, data.code or "")
        issued = None
        if code_id is not None:
            async with tether.engine.begin() as conn:
                issued = await exchange(
                    conn,
                    tether,
                    code_id,
                    data.code or "",
                    data.client_id or "",
                    data.redirect_uri or "",
                    data.code_verifier or "",
                )
        if issued is None:
            raise oauth_error("invalid_grant", REFUSED)
        return issued
    if data.grant_type == "refresh_token":
        _require(data, "refresh_token")
        async with tether.engine.begin() as conn:
            found = await _refresh_grant(conn, tether, data.refresh_token or "")
        if found is None:
            raise unauthenticated("Invalid credentials.")
        async with tether.engine.begin() as conn:
            return await issue_session(
                conn, tether, found[0], family_id=found[1], client_id=found[2]
            )
    address = client_address(request.scope)
    if data.grant_type == "password":
        _require(data, "username", "password", "organization")
        account = f"user:{data.organization}:{data.username}"
    elif data.grant_type == "device":
        _require(data, "device_id", "device_secret")
        account = secret_key(data.device_id or "", address)
    else:
        _require(data, "app_id", "api_key")
        account = secret_key(data.app_id or "", address)
    await tether.limiter.attempt(account, address)
    principal: Principal | None
    if data.grant_type == "password":
        async with tether.reader.connect() as reads:
            principal = await _password_grant(reads, data)
    else:
        key, secret = (
            (data.device_id, data.device_secret)
            if data.grant_type == "device"
            else (data.app_id, data.api_key)
        )
        principal = await principal_for_secret(tether, key or "", secret or "")
        principal = principal if principal and principal.type == data.grant_type else None
    if principal is None:
        raise unauthenticated("Invalid credentials.")
    await tether.limiter.succeeded(account, address)
    async with tether.engine.begin() as conn:
        return await issue_session(conn, tether, principal)


router = Router("/", route_handlers=[token])
