"""Organizations, users and API tokens.

The operator (a superuser) creates organizations, each with its first admin. Admins manage the
users of their organization. Users mint API tokens: opaque, shown once, stored hashed,
read-only or read-write, optionally bound to one project, revocable and expiring.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, delete, get, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.credentials import (
    API_TOKEN_PREFIX,
    Principal,
    digest,
    hash_password,
    make_prefixed,
)
from tether.server.database import new_id, utcnow
from tether.server.pages import Page, check_query, fetch_page, page_limit
from tether.server.problems import conflict, forbidden, invalid, not_found
from tether.server.resources import RowView, principal_of
from tether.server.state import Tether
from tether.server.tables import api_tokens, organizations, resources, users

Username = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\s:]+$")]
OrgName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=1000)]
TokenName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MAX_TOKEN_LIFETIME = 10 * 365 * 86400


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Password
    is_admin: bool = False


class UserOut(msgspec.Struct):
    id: str
    username: str
    is_admin: bool
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


def require_admin(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    if principal.type != "user" or not principal.is_admin:
        raise forbidden("Only organization admins may do this.")
    return principal


def _user_out(row: Any) -> UserOut:
    return UserOut(row.id, row.username, row.is_admin, row.created_at)


async def insert_user(
    conn: AsyncConnection, org_id: str, data: JSONBody[UserCreate], superuser: bool = False
) -> UserOut:
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id(),
        "org_id": org_id,
        "username": data.username,
        "password_hash": await hash_password(data.password),
        "is_admin": data.is_admin,
        "is_superuser": superuser,
        "created_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(users.insert().values(row))
    except IntegrityError:
        raise conflict(f"User {data.username!r} exists already.") from None
    return UserOut(row["id"], data.username, data.is_admin, now)


async def insert_organization(conn: AsyncConnection, name: str) -> tuple[str, dt.datetime]:
    org_id, now = new_id(), utcnow()
    try:
        async with conn.begin_nested():
            await conn.execute(organizations.insert().values(id=org_id, name=name, created_at=now))
    except IntegrityError:
        raise conflict(f"Organization {name!r} exists already.") from None
    return org_id, now


@post("/organizations", tags=["identity"], summary="Create an organization with its first admin")
async def create_organization(
    data: JSONBody[OrganizationCreate], request: Request[Any, Any, Any], tether: Tether
) -> OrganizationOut:
    if not principal_of(request).is_superuser:
        raise forbidden("Only the server operator may create organizations.")
    async with tether.engine.begin() as conn:
        org_id, now = await insert_organization(conn, data.name)
        admin = msgspec.structs.replace(data.admin, is_admin=True)
        user = await insert_user(conn, org_id, admin)
    return OrganizationOut(org_id, data.name, now, user)


@get("/organizations/current", tags=["identity"], summary="The caller's organization")
async def current_organization(request: Request[Any, Any, Any], tether: Tether) -> OrganizationOut:
    async with tether.reader.connect() as conn:
        row = (
            await conn.execute(
                sa.select(organizations).where(organizations.c.id == principal_of(request).org_id)
            )
        ).one()
    return OrganizationOut(row.id, row.name, row.created_at)


@get("/users", tags=["identity"], summary="List the organization's users")
async def list_users(request: Request[Any, Any, Any], tether: Tether) -> Page[UserOut]:
    check_query(request, {"username"})
    principal = principal_of(request)
    limit = page_limit(request, tether.settings.page_size, tether.settings.max_page_size)
    query = sa.select(users).where(users.c.org_id == principal.org_id)
    if "username" in request.query_params:
        query = query.where(users.c.username == request.query_params["username"])
    async with tether.reader.connect() as conn:
        total, rows, next_url = await fetch_page(conn, request, query, users.c.id, limit)
    return Page(total, [_user_out(r) for r in rows], next_url)


@post("/users", tags=["identity"], summary="Create a user (admins only)")
async def create_user(
    data: JSONBody[UserCreate], request: Request[Any, Any, Any], tether: Tether
) -> UserOut:
    principal = require_admin(request)
    async with tether.engine.begin() as conn:
        return await insert_user(conn, principal.org_id, data)


@delete("/users/{user_id:str}", tags=["identity"], summary="Delete a user (admins only)")
async def delete_user(
    user_id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> None:
    principal = require_admin(request)
    if user_id == principal.id:
        raise invalid("You cannot delete yourself.", "self_delete")
    async with tether.engine.begin() as conn:
        gone = await conn.execute(
            users.delete().where(users.c.id == user_id, users.c.org_id == principal.org_id)
        )
    if gone.rowcount != 1:
        raise not_found("user")


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


def _user_of(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    if principal.type != "user":
        raise forbidden("Only users have API tokens.")
    return principal


@post("/tokens", tags=["identity"], summary="Create an API token (shown once)")
async def create_token(
    data: JSONBody[TokenCreate], request: Request[Any, Any, Any], tether: Tether
) -> TokenOut:
    principal = _user_of(request)
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


@get("/tokens", tags=["identity"], summary="List your API tokens")
async def list_tokens(request: Request[Any, Any, Any], tether: Tether) -> Page[TokenOut]:
    check_query(request, ())
    principal = _user_of(request)
    limit = page_limit(request, tether.settings.page_size, tether.settings.max_page_size)
    query = sa.select(api_tokens).where(
        api_tokens.c.org_id == principal.org_id, api_tokens.c.user_id == principal.id
    )
    async with tether.reader.connect() as conn:
        total, rows, next_url = await fetch_page(conn, request, query, api_tokens.c.id, limit)
    return Page(total, [_token_out(r) for r in rows], next_url)


@delete("/tokens/{token_id:str}", tags=["identity"], summary="Revoke an API token")
async def revoke_token(
    token_id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> None:
    principal = _user_of(request)
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


router = Router(
    "/",
    route_handlers=[
        create_organization,
        current_organization,
        list_users,
        create_user,
        delete_user,
        create_token,
        list_tokens,
        revoke_token,
    ],
)
