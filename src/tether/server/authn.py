"""Who is calling: the authentication middleware and the rules every request obeys.

Bearer access tokens (signed, no database round trip), Bearer API tokens (opaque, looked up by
the id they carry) and HTTP Basic with key:secret (device or app id and secret, or an API token
as the user name) all resolve to one `Principal`. After that, two house rules apply to every
endpoint at once: read-only principals cannot write, and project tokens stay in their project.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from tether.server.credentials import (
    API_TOKEN_PREFIX,
    Principal,
    digest_matches,
    split_prefixed,
)
from tether.server.database import utcnow
from tether.server.problems import Problem
from tether.server.state import ServerState
from tether.server.tables import api_tokens, resources, users

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PROJECT_PATH = re.compile(r"^/api/v1/projects/([^/]+)(/|$)")
_ANYWHERE = frozenset({"/api/v1/auth/whoami"})
_CREDENTIAL_KINDS = ("device", "app")


def unauthenticated(detail: str = "Authentication required.") -> Problem:
    return Problem(401, detail, code="unauthenticated")


def rate_limited(retry_after: int) -> Problem:
    return Problem(
        429,
        f"Too many failed attempts; try again in {retry_after} s.",
        code="rate_limited",
        headers={"Retry-After": str(retry_after)},
        extra={"retry_after": retry_after},
    )


def check_limit(state: ServerState, key: str) -> None:
    wait = state.limiter.retry_after(key)
    if wait:
        raise rate_limited(wait)


async def principal_for_api_token(state: ServerState, token: str) -> Principal | None:
    token_id = split_prefixed(API_TOKEN_PREFIX, token)
    if token_id is None:
        return None
    async with state.reader.connect() as conn:
        row = (
            await conn.execute(
                sa.select(api_tokens, users.c.username, users.c.is_admin, users.c.is_superuser)
                .join(users, users.c.id == api_tokens.c.user_id)
                .where(api_tokens.c.id == token_id)
            )
        ).first()
    if row is None or not digest_matches(token, row.token_hash) or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return Principal(
        type="user",
        id=row.user_id,
        org_id=row.org_id,
        name=row.username,
        read_only=row.read_only,
        project_id=row.project_id,
        is_admin=row.is_admin and not row.read_only and row.project_id is None,
        is_superuser=False,
        token_id=row.id,
    )


async def principal_for_secret(state: ServerState, key: str, secret: str) -> Principal | None:
    """A device or app by id and secret."""
    async with state.reader.connect() as conn:
        row = (
            await conn.execute(
                sa.select(
                    resources.c.id,
                    resources.c.org_id,
                    resources.c.kind,
                    resources.c.name,
                    resources.c.secret_hash,
                    resources.c.read_only,
                    resources.c.project_id,
                ).where(resources.c.id == key, resources.c.kind.in_(_CREDENTIAL_KINDS))
            )
        ).first()
    if row is None or not digest_matches(secret, row.secret_hash):
        return None
    return Principal(
        type=row.kind,
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        read_only=bool(row.read_only),
        project_id=row.project_id,
    )


async def authenticate(state: ServerState, authorization: str) -> Principal:
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        if value.startswith(API_TOKEN_PREFIX):
            principal = await principal_for_api_token(state, value)
        else:
            principal = state.tokens.verify(value)
        if principal is None:
            raise unauthenticated("The token is invalid, expired or revoked.")
        return principal
    if scheme == "basic" and value:
        try:
            key, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthenticated("Malformed Basic credentials.") from None
        limit_key = f"basic:{key}"
        check_limit(state, limit_key)
        if key.startswith(API_TOKEN_PREFIX):
            principal = await principal_for_api_token(state, key)
        else:
            principal = await principal_for_secret(state, key, secret)
        if principal is None:
            state.limiter.failed(limit_key)
            raise unauthenticated("Invalid credentials.")
        state.limiter.succeeded(limit_key)
        return principal
    raise unauthenticated("Unsupported authorization scheme; use Bearer or Basic.")


def enforce_scope(principal: Principal, method: str, path: str, reads_only: bool = False) -> None:
    """Read-only principals cannot write (`reads_only`: a POST that changes nothing, such as an
    update check); project-bound ones cannot leave their project."""
    if principal.read_only and method not in _SAFE_METHODS and not reads_only:
        raise Problem(403, "This credential is read-only.", code="read_only")
    if principal.project_id and path not in _ANYWHERE:
        match = _PROJECT_PATH.match(path)
        if match is None or match.group(1) != principal.project_id:
            raise Problem(
                403,
                "This credential is limited to one project; use its /api/v1/projects/{id} URLs.",
                code="outside_project",
            )


class AuthenticationMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        state: ServerState = connection.app.state.tether
        header = _authorization(connection.scope["headers"])
        if not header:
            raise unauthenticated()
        principal = await authenticate(state, header)
        scope = connection.scope
        enforce_scope(
            principal,
            str(scope.get("method", "GET")),
            scope.get("root_path", "") + scope["path"],
            bool(connection.route_handler.opt.get("reads_only")),
        )
        return AuthenticationResult(user=principal, auth=header)


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The Authorization header, read straight from the ASGI scope: on every request, building
    Litestar's header mapping cost more than the check of a remembered token."""
    for name, value in headers:
        if name == b"authorization" or (len(name) == 13 and name.lower() == b"authorization"):
            return value.decode("latin-1")
    return None
