"""Organizations, users and API tokens.

The operator (a superuser) creates organizations, each with its first admin. Admins manage the
users of their organization and their roles (admin, member, viewer: see
`tether.server.identity.policy`). Users mint API tokens: opaque, shown once, stored hashed,
read-only or read-write, optionally bound to one project, revocable and expiring. Deleting a
user, changing a password or revoking a token stops every credential derived from it at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.db.engine import RowView, new_id, utcnow
from tether.server.db.pages import Page, filters_of, list_page, narrowed, page_limit
from tether.server.db.tables import api_tokens, organizations, resources, users
from tether.server.identity.credentials import (
    API_TOKEN_PREFIX,
    digest,
    hash_password,
    make_prefixed,
    verify_password,
)
from tether.server.identity.policy import allow
from tether.server.identity.revocations import Revocations
from tether.server.identity.scope import principal_of
from tether.server.identity.sessions import revoke_principal
from tether.server.problems import conflict, forbidden, invalid, not_found
from tether.server.state import Tether

Username = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\s:]+$")]
OrgName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=1000)]
Role = Literal["admin", "member", "viewer"]
TokenName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MAX_TOKEN_LIFETIME = 10 * 365 * 86400


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Password
    role: Role = "member"


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True):
    role: Role | msgspec.UnsetType = msgspec.UNSET
    password: Password | msgspec.UnsetType = msgspec.UNSET


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Annotated[str, msgspec.Meta(max_length=1000)]
    new_password: Password


class UserOut(msgspec.Struct):
    id: str
    username: str
    role: str
    created_at: dt.datetime


class OrganizationCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: OrgName
    admin: UserCreate


class OrganizationOut(msgspec.Struct, omit_defaults=True):
    id: str
    name: str
    created_at: dt.datetime
    admin: UserOut | None = None


class TokenCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: TokenName
    read_only: bool = False
    project_id: Annotated[str, msgspec.Meta(max_length=36)] | None = None
    expires_in: Annotated[int, msgspec.Meta(ge=60, le=MAX_TOKEN_LIFETIME)] | None = None


class TokenOut(msgspec.Struct, omit_defaults=True):
    id: str
    name: str
    read_only: bool
    created_at: dt.datetime
    prefix: str
    project_id: str | None = None
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    token: str | None = None


def _user_out(row: Any) -> UserOut:
    return UserOut(row.id, row.username, row.role, row.created_at)


async def insert_user(
    conn: AsyncConnection, org_id: str, data: JSONBody[UserCreate], superuser: bool = False
) -> UserOut:
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id(),
        "org_id": org_id,
        "username": data.username,
        "password_hash": await hash_password(data.password),
        "role": data.role,
        "is_superuser": superuser,
        "created_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(users.insert().values(row))
    except IntegrityError:
        raise conflict(f"User {data.username!r} exists already.") from None
    return UserOut(row["id"], data.username, data.role, now)


async def insert_organization(conn: AsyncConnection, name: str) -> tuple[str, dt.datetime]:
    org_id, now = new_id(), utcnow()
    try:
        async with conn.begin_nested():
            await conn.execute(organizations.insert().values(id=org_id, name=name, created_at=now))
    except IntegrityError:
        raise conflict(f"Organization {name!r} exists already.") from None
    return org_id, now


@post(
    "/organizations",
    tags=["identity"],
    summary="Create an organization with its first admin",
    opt=allow("organization", "create"),
)
async def create_organization(
    data: JSONBody[OrganizationCreate], tether: Tether
) -> OrganizationOut:
    async with tether.engine.begin() as conn:
        org_id, now = await insert_organization(conn, data.name)
        admin = msgspec.structs.replace(data.admin, role="admin")
        user = await insert_user(conn, org_id, admin)
    return OrganizationOut(org_id, data.name, now, user)


@get(
    "/organizations/current",
    tags=["identity"],
    summary="The caller's organization",
    opt=allow("session", "read"),
)
async def current_organization(request: Request[Any, Any, Any], tether: Tether) -> OrganizationOut:
    async with tether.reader.connect() as conn:
        row = (
            await conn.execute(
                sa.select(organizations).where(organizations.c.id == principal_of(request).org_id)
            )
        ).one()
    return OrganizationOut(row.id, row.name, row.created_at)


_USERS = sa.select(users).where(users.c.org_id == sa.bindparam("org_id"))
_TOKENS = sa.select(api_tokens).where(
    api_tokens.c.org_id == sa.bindparam("org_id"), api_tokens.c.user_id == sa.bindparam("user_id")
)


@get(
    "/users",
    tags=["identity"],
    summary="List the organization's users",
    opt=allow("user", "read", query=("limit", "after", "username")),
)
async def list_users(request: Request[Any, Any, Any], tether: Tether) -> Page[UserOut]:
    limit = page_limit(request, tether.settings)
    given = filters_of(request, ("username",))
    query = narrowed(_USERS, users, tuple(given))
    params = {"org_id": principal_of(request).org_id, **given}
    async with tether.reader.connect() as conn:
        return await list_page(conn, request, query, users.c.id, limit, _user_out, params)


@post(
    "/users", tags=["identity"], summary="Create a user (admins only)", opt=allow("user", "write")
)
async def create_user(
    data: JSONBody[UserCreate], request: Request[Any, Any, Any], tether: Tether
) -> UserOut:
    async with tether.engine.begin() as conn:
        return await insert_user(conn, principal_of(request).org_id, data)


@patch(
    "/users/{user_id:str}",
    tags=["identity"],
    summary="Change a user's role or password (admins only); a new password ends its sessions",
    opt=allow("user", "write"),
)
async def update_user(
    user_id: FromPath[str],
    data: JSONBody[UserUpdate],
    request: Request[Any, Any, Any],
    tether: Tether,
) -> UserOut:
    principal = principal_of(request)
    values: dict[str, Any] = {}
    if data.role is not msgspec.UNSET:
        if user_id == principal.id and data.role != "admin":
            raise invalid("You cannot take your own admin role away.", "self_demote")
        values["role"] = data.role
    if data.password is not msgspec.UNSET:
        values["password_hash"] = await hash_password(data.password)
    where = (users.c.id == user_id, users.c.org_id == principal.org_id)
    async with tether.engine.begin() as conn:
        if values:
            done = await conn.execute(users.update().where(*where).values(values))
            if done.rowcount != 1:
                raise not_found("user")
            await end_credentials(conn, tether.revocations, user_id, tokens="password" in values)
        row = (await conn.execute(sa.select(users).where(*where))).first()
    if row is None:
        raise not_found("user")
    return _user_out(row)


@post(
    "/auth/password",
    tags=["identity"],
    status_code=204,
    summary="Change your own password; every other credential of yours stops working",
    opt=allow("password", "change"),
)
async def change_password(
    data: JSONBody[PasswordChange], request: Request[Any, Any, Any], tether: Tether
) -> None:
    principal = principal_of(request)
    async with tether.engine.begin() as conn:
        stored = (
            await conn.execute(sa.select(users.c.password_hash).where(users.c.id == principal.id))
        ).scalar()
        if not await verify_password(data.current_password, stored):
            raise invalid("The current password is wrong.", "wrong_password")
        new_hash = await hash_password(data.new_password)
        await conn.execute(
            users.update().where(users.c.id == principal.id).values(password_hash=new_hash)
        )
        await end_credentials(conn, tether.revocations, principal.id, tokens=True)


@delete(
    "/users/{user_id:str}",
    tags=["identity"],
    summary="Delete a user (admins only)",
    opt=allow("user", "write"),
)
async def delete_user(
    user_id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> None:
    principal = principal_of(request)
    if user_id == principal.id:
        raise invalid("You cannot delete yourself.", "self_delete")
    async with tether.engine.begin() as conn:
        gone = await conn.execute(
            users.delete().where(users.c.id == user_id, users.c.org_id == principal.org_id)
        )
        if gone.rowcount != 1:
            raise not_found("user")
        await end_credentials(conn, tether.revocations, user_id, tokens=True)


async def end_credentials(
    conn: AsyncConnection, revoked: Revocations, user_id: str, tokens: bool
) -> None:
    """Stop a user's sessions and, with `tokens`, its API tokens (and their sockets)."""
    await revoke_principal(conn, revoked, user_id)
    if tokens:
        ended = await conn.execute(
            api_tokens.update()
            .where(api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(api_tokens.c.id)
        )
        await revoked.revoke(conn, list(ended.scalars()))


def _token_out(row: Any, token: str | None = None) -> TokenOut:
    return TokenOut(
        id=row.id,
        name=row.name,
        read_only=row.read_only,
        created_at=row.created_at,
        prefix=f"{API_TOKEN_PREFIX}{row.id.replace('-', '')[:8]}",
        project_id=row.project_id,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        token=token,
    )


@post(
    "/tokens",
    tags=["identity"],
    summary="Create an API token (shown once)",
    opt=allow("token", "write"),
)
async def create_token(
    data: JSONBody[TokenCreate], request: Request[Any, Any, Any], tether: Tether
) -> TokenOut:
    principal = principal_of(request)
    project_id = data.project_id or principal.project_id
    if principal.project_id and project_id != principal.project_id:
        raise forbidden("A project token can only create tokens for its project.")
    now = utcnow()
    token_id = new_id()
    token = make_prefixed(API_TOKEN_PREFIX, token_id)
    async with tether.engine.begin() as conn:
        if project_id is not None:
            found = (
                await conn.execute(
                    sa.select(resources.c.id).where(
                        resources.c.id == project_id,
                        resources.c.org_id == principal.org_id,
                        resources.c.kind == "project",
                    )
                )
            ).first()
            if found is None:
                raise invalid(f"{project_id} is not a project here.", "invalid_reference")
        row = {
            "id": token_id,
            "org_id": principal.org_id,
            "user_id": principal.id,
            "name": data.name,
            "token_hash": digest(token),
            "read_only": data.read_only or principal.read_only,
            "project_id": project_id,
            "expires_at": now + dt.timedelta(seconds=data.expires_in) if data.expires_in else None,
            "revoked_at": None,
            "created_at": now,
        }
        await conn.execute(api_tokens.insert().values(row))
    return _token_out(RowView(row), token)


@get(
    "/tokens",
    tags=["identity"],
    summary="List your API tokens",
    opt=allow("token", "read", query=("limit", "after")),
)
async def list_tokens(request: Request[Any, Any, Any], tether: Tether) -> Page[TokenOut]:
    limit = page_limit(request, tether.settings)
    principal = principal_of(request)
    params = {"org_id": principal.org_id, "user_id": principal.id}
    async with tether.reader.connect() as conn:
        return await list_page(conn, request, _TOKENS, api_tokens.c.id, limit, _token_out, params)


@delete(
    "/tokens/{token_id:str}",
    tags=["identity"],
    summary="Revoke an API token (its open sockets are closed)",
    opt=allow("token", "write"),
)
async def revoke_token(
    token_id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> None:
    principal = principal_of(request)
    async with tether.engine.begin() as conn:
        done = await conn.execute(
            api_tokens.update()
            .where(
                api_tokens.c.id == token_id,
                api_tokens.c.org_id == principal.org_id,
                api_tokens.c.user_id == principal.id,
            )
            .values(revoked_at=sa.func.coalesce(api_tokens.c.revoked_at, utcnow()))
        )
        if done.rowcount != 1:
            raise not_found("token")
        await tether.revocations.revoke(conn, [token_id])


router = Router(
    "/",
    route_handlers=[
        create_organization,
        current_organization,
        list_users,
        create_user,
        update_user,
        change_password,
        delete_user,
        create_token,
        list_tokens,
        revoke_token,
    ],
)
