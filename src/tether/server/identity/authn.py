"""Who is calling: the authentication middleware.

Bearer access tokens (signed, no database round trip, refused once revoked), Bearer API tokens
(opaque, looked up by the id they carry), HTTP Basic with key:secret (device or app id and
secret, or an API token as the user name) and, from the console's own pages, the console
session's cookie (`cookies`) all resolve to one `Principal`. What that principal
may then do is decided by `tether.server.identity.policy`, the guard of every route.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, cast

import sqlalchemy as sa
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from tether.server.db.engine import utcnow
from tether.server.db.reads import fetch
from tether.server.db.tables import api_tokens, resources, users
from tether.server.identity.cookies import session_credential
from tether.server.identity.credentials import (
    API_TOKEN_PREFIX,
    Principal,
    digest_matches,
    split_prefixed,
)
from tether.server.identity.signin_limits import client_address, secret_key
from tether.server.problems import Problem
from tether.server.state import ServerState

_CREDENTIAL_KINDS = ("device", "app")
CREDENTIAL_HOLDER = sa.select(
    resources.c.id,
    resources.c.org_id,
    resources.c.kind,
    resources.c.name,
    resources.c.secret_hash,
    resources.c.read_only,
    resources.c.project_id,
)
"""What `Principal.of_resource` needs of a device or app, and its secret's digest."""
USER_PRINCIPAL = sa.select(
    users.c.id, users.c.org_id, users.c.username, users.c.role, users.c.is_superuser
)
"""What `Principal.of_user` needs of a user."""
_API_TOKEN = (
    sa.select(
        *USER_PRINCIPAL.selected_columns,
        api_tokens.c.id.label("token_id"),
        api_tokens.c.token_hash,
        api_tokens.c.read_only,
        api_tokens.c.project_id,
        api_tokens.c.revoked_at,
        api_tokens.c.expires_at,
        api_tokens.c.created_at,
    )
    .join(users, users.c.id == api_tokens.c.user_id)
    .where(api_tokens.c.id == sa.bindparam("token_id"))
)


def unauthenticated(detail: str = "Authentication required.") -> Problem:
    return Problem(401, detail, code="unauthenticated")


async def principal_for_api_token(state: ServerState, token: str) -> Principal | None:
    """The user an API token speaks for, looked up once every few seconds per token (the
    revocations the caller checks next still refuse it at once)."""
    known = state.api_tokens.get(token)
    if known is not None and (known[1] is None or known[1] > utcnow()):
        return known[0]  # type: ignore[no-any-return]
    token_id = split_prefixed(API_TOKEN_PREFIX, token)
    if token_id is None:
        return None
    async with state.reader.point() as conn:
        found = await fetch(conn, _API_TOKEN, {"token_id": token_id})
    row = found[0] if found else None
    if row is None or not digest_matches(token, row.token_hash) or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    principal = Principal.of_user(
        row,
        read_only=row.read_only,
        project_id=row.project_id,
        token_id=row.token_id,
        issued_at=row.created_at.timestamp(),
    )
    state.api_tokens.put(token, (principal, row.expires_at))
    return principal


async def principal_for_secret(state: ServerState, key: str, secret: str) -> Principal | None:
    """A device or app by id and secret."""
    async with state.reader.point() as conn:
        row = (
            await conn.execute(
                CREDENTIAL_HOLDER.where(
                    resources.c.id == key, resources.c.kind.in_(_CREDENTIAL_KINDS)
                )
            )
        ).first()
    if row is None or not digest_matches(secret, row.secret_hash):
        return None
    return Principal.of_resource(row)


async def authenticate(
    state: ServerState, authorization: str, address: str | None = None
) -> Principal:
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        if value.startswith(API_TOKEN_PREFIX):
            principal = await principal_for_api_token(state, value)
        else:
            principal = state.tokens.verify(value)
        if principal is None or state.revocations.refuses(principal):
            raise unauthenticated("The token is invalid, expired or revoked.")
        return principal
    if scheme == "basic" and value:
        try:
            key, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthenticated("Malformed Basic credentials.") from None
        if "\x00" in key or "\x00" in secret:
            raise unauthenticated("Invalid credentials.")
        limit_key = secret_key(key, address)
        state.limiter.check(limit_key)
        if key.startswith(API_TOKEN_PREFIX):
            principal = await principal_for_api_token(state, key)
        else:
            principal = await principal_for_secret(state, key, secret)
        if principal is None:
            await state.limiter.failed(limit_key)
            raise unauthenticated("Invalid credentials.")
        return principal
    raise unauthenticated("Unsupported authorization scheme; use Bearer or Basic.")


AUTHENTICATED = "tether.principal"
"""Scope key of a request the server makes to itself (the console's API calls) for a principal
it has just authenticated; clients cannot set scope keys."""


class AuthenticationMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        state: ServerState = connection.app.state.tether
        known = cast("Principal | None", connection.scope.get(AUTHENTICATED))
        if known is not None:
            if state.revocations.refuses(known):
                raise unauthenticated("The token is invalid, expired or revoked.")
            return AuthenticationResult(user=known, auth=None)
        header = _authorization(connection.scope["headers"]) or session_credential(connection.scope)
        if not header:
            raise unauthenticated()
        principal = await authenticate(state, header, client_address(connection.scope))
        if principal.type == "device":
            state.seen.saw(principal.id)
        return AuthenticationResult(user=principal, auth=header)


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The Authorization header, read straight from the ASGI scope: on every request, building
    Litestar's header mapping cost more than the check of a remembered token."""
    for name, value in headers:
        if name == b"authorization" or (len(name) == 13 and name.lower() == b"authorization"):
            return value.decode("latin-1")
    return None
