"""Sessions: what a sign-in issues (an access token, a rotating refresh token and the
identity), their revocation, whoami and logout. The grants that lead here are in `signin`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, get, post
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.db.cascades import Gone, on_delete
from tether.server.db.engine import new_id, utcnow
from tether.server.db.reads import Reads
from tether.server.db.tables import organizations, refresh_tokens, resources, users
from tether.server.identity.authn import (
    CREDENTIAL_HOLDER,
    USER_PRINCIPAL,
)
from tether.server.identity.credentials import (
    REFRESH_TOKEN_PREFIX,
    Principal,
    digest,
    digest_matches,
    make_prefixed,
    split_prefixed,
)
from tether.server.identity.policy import allow
from tether.server.identity.revocations import Revocations
from tether.server.inputs import SIGN_IN_BODY
from tether.server.state import ServerState, Tether

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class Organization(msgspec.Struct):
    id: str
    name: str


class Identity(msgspec.Struct, omit_defaults=True):
    type: str
    id: str
    name: str
    organization: Organization
    read_only: bool = False
    project_id: str | None = None
    role: str | None = None
    is_admin: bool = False
    is_superuser: bool = False
    token_id: str | None = None
    client_id: str | None = None
    """The app acting for the person, when this sign-in came through OAuth."""


class TokenResponse(msgspec.Struct, omit_defaults=True):
    access_token: str
    token_type: str
    expires_in: int
    expires_at: dt.datetime
    refresh_token: str
    identity: Identity
    device_id: str | None = None
    device_secret: str | None = None


class LogoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Secret


async def identity_of(conn: Reads, principal: Principal) -> Identity:
    org_name = (
        await conn.execute(
            sa.select(organizations.c.name).where(organizations.c.id == principal.org_id)
        )
    ).scalar_one()
    return Identity(
        type=principal.type,
        id=principal.id,
        name=principal.name,
        organization=Organization(principal.org_id, org_name),
        read_only=principal.read_only,
        project_id=principal.project_id,
        role=principal.role if principal.type == "user" else None,
        is_admin=principal.is_admin,
        is_superuser=principal.is_superuser,
        token_id=principal.token_id,
        client_id=principal.client_id,
    )


async def issue_session(
    conn: AsyncConnection,
    state: ServerState,
    principal: Principal,
    family_id: str | None = None,
    client_id: str | None = None,
    **extra: Any,
) -> TokenResponse:
    """An access token plus a new refresh token for `principal`. A sign-in starts a family of
    refresh tokens (`family_id`, carried by its access tokens as `sid`); each refresh continues
    it, and logout or the reuse of a spent refresh token revokes all of it. The refresh token
    keeps the principal's read-only narrowing and the app it was issued to (`client_id`)."""
    now = utcnow()
    refresh_id = new_id()
    family_id = family_id or refresh_id
    principal = dataclasses.replace(
        principal, session_id=family_id, client_id=client_id or principal.client_id
    )
    access, expires = state.tokens.issue(principal, now)
    refresh = make_prefixed(REFRESH_TOKEN_PREFIX, refresh_id)
    await conn.execute(
        refresh_tokens.insert().values(
            id=refresh_id,
            org_id=principal.org_id,
            principal_type=principal.type,
            principal_id=principal.id,
            token_hash=digest(refresh),
            expires_at=now + dt.timedelta(seconds=state.settings.refresh_token_ttl),
            family_id=family_id,
            created_at=now,
            read_only=principal.read_only or None,
            client_id=client_id,
        )
    )
    return TokenResponse(
        access_token=access,
        token_type="bearer",
        expires_in=state.tokens.ttl,
        expires_at=expires,
        refresh_token=refresh,
        identity=await identity_of(conn, principal),
        **extra,
    )


async def revoke_family(conn: AsyncConnection, revoked: Revocations, family_id: str) -> None:
    """End a sign-in: every refresh token of its family, and the access tokens it issued."""
    await _revoke(conn, revoked, refresh_tokens.c.family_id, family_id)


@on_delete("device", "app")
async def _stop_credentials(gone: Gone) -> None:
    """A deleted device or app: every credential it held stops at once."""
    for principal_id in gone.ids:
        await revoke_principal(gone.conn, gone.state.revocations, principal_id)


async def revoke_principal(conn: AsyncConnection, revoked: Revocations, principal_id: str) -> None:
    """Stop every credential issued to a user, device or app so far: its access tokens (at
    once, everywhere) and its refresh tokens."""
    await _revoke(conn, revoked, refresh_tokens.c.principal_id, principal_id)


async def _revoke(
    conn: AsyncConnection, revoked: Revocations, column: sa.Column[str], subject: str
) -> None:
    """Spend the refresh tokens whose `column` is `subject`, and revoke what `subject` was
    issued until now."""
    await conn.execute(
        refresh_tokens.update()
        .where(column == subject, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await revoked.revoke(conn, [subject])


async def user_principal(conn: Reads, user_id: str, **narrowed: Any) -> Principal | None:
    """A user as a principal (None if gone), narrowed as `Principal.of_user` says."""
    row = (await conn.execute(USER_PRINCIPAL.where(users.c.id == user_id))).first()
    return None if row is None else Principal.of_user(row, **narrowed)


async def resource_principal(conn: Reads, resource_id: str, kind: str) -> Principal | None:
    """A device or app as a principal, from its row (None if it is gone)."""
    holder = CREDENTIAL_HOLDER.where(resources.c.id == resource_id, resources.c.kind == kind)
    row = (await conn.execute(holder)).first()
    return None if row is None else Principal.of_resource(row)


@get("/auth/whoami", summary="The identity behind the credential", opt=allow("session", "read"))
async def whoami(request: Request[Principal, Any, Any], tether: Tether) -> Identity:
    async with tether.reader.connect() as conn:
        return await identity_of(conn, request.user)


@post(
    "/auth/logout",
    opt={"exclude_from_auth": True},
    request_max_body_size=SIGN_IN_BODY,
    status_code=204,
    summary="Revoke a refresh token",
)
async def logout(data: JSONBody[LogoutRequest], tether: Tether) -> None:
    token_id = split_prefixed(REFRESH_TOKEN_PREFIX, data.refresh_token)
    if token_id is None:
        return
    async with tether.engine.begin() as conn:
        row = (
            await conn.execute(
                sa.select(refresh_tokens.c.token_hash, refresh_tokens.c.family_id).where(
                    refresh_tokens.c.id == token_id
                )
            )
        ).first()
        if row is not None and digest_matches(data.refresh_token, row.token_hash):
            await revoke_family(conn, tether.revocations, row.family_id)


router = Router("/", route_handlers=[whoami, logout])
