"""Device pairing, shaped like the OAuth 2.0 device authorization grant (RFC 8628).

A device with no credentials asks for a code pair, shows the short user code, and polls the
token endpoint with its device code. A signed-in user approves the user code, which creates the
device in the user's organization (`resources.pairing`, where devices are made); the next poll
hands the device its own id and secret.

A device may name the organization it means to join: that organization's fleet managers then
see it waiting (`GET /pairing/pending`: its name, address and times, never its code). Approval
still takes the code the device shows, so a stranger's request cannot be approved from the
list; the answer to the device is the same whether the organization exists or not.

Guessing is bounded: starts are counted per client address (429 over its sign-in budget), an
organization lists at most that many new requests a window (more pair only by code), an approver
may miss five codes a window, and a code that named an organization is approved only there.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, get, post
from litestar.params import JSONBody

from tether.server.db.engine import new_id, utcnow
from tether.server.db.tables import organizations, pairings, resources
from tether.server.identity.credentials import Principal, digest, new_secret
from tether.server.identity.policy import allow
from tether.server.identity.sessions import TokenResponse, issue_session, resource_principal
from tether.server.identity.signin_limits import client_address
from tether.server.inputs import SIGN_IN_BODY
from tether.server.problems import Problem
from tether.server.state import Tether

_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
POLL_INTERVAL = 2


class PairingRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    organization: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    """The organization the device means to join, by name: its people see the request."""


class WaitingDevice(msgspec.Struct):
    """A pairing request that named the caller's organization, waiting for its code."""

    id: str
    name: str | None
    address: str | None
    created_at: dt.datetime
    expires_at: dt.datetime


class PairingStarted(msgspec.Struct):
    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


@post(
    "/pairing",
    opt={"exclude_from_auth": True},
    request_max_body_size=SIGN_IN_BODY,
    status_code=201,
    summary="Start pairing a device that has no credentials",
)
async def start(
    data: JSONBody[PairingRequest], request: Request[Any, Any, Any], tether: Tether
) -> PairingStarted:
    device_code = new_secret()
    user_code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    now = utcnow()
    ttl = tether.settings.pairing_ttl
    address = client_address(request.scope)
    budget = tether.limiter.max_per_address
    await tether.limiter.failed(f"pairing:{address or ''}", budget)
    wants = None
    if data.organization:
        async with tether.reader.connect() as reads:
            named = sa.select(organizations.c.id).where(organizations.c.name == data.organization)
            wants = (await reads.execute(named)).scalar()
    if wants is not None and not await tether.limiter.counted(f"pairing-org:{wants}", budget):
        wants = None
    async with tether.engine.begin() as conn:
        await conn.execute(pairings.delete().where(pairings.c.expires_at < now))
        await conn.execute(
            pairings.insert().values(
                id=new_id(),
                user_code=user_code,
                device_code_hash=digest(device_code),
                status="pending",
                name=data.name,
                expires_at=now + dt.timedelta(seconds=ttl),
                created_at=now,
                wants_org_id=wants,
                address=address[:100] if address else None,
            )
        )
    return PairingStarted(
        device_code=device_code,
        user_code=f"{user_code[:4]}-{user_code[4:]}",
        verification_uri=str(request.base_url).rstrip("/") + "/api/v1/pairing/approve",
        expires_in=ttl,
        interval=POLL_INTERVAL,
    )


_WAITING = (
    sa.select(pairings)
    .where(
        pairings.c.wants_org_id == sa.bindparam("org_id"),
        pairings.c.status == "pending",
        pairings.c.expires_at > sa.bindparam("now", type_=pairings.c.expires_at.type),
    )
    .order_by(pairings.c.created_at.desc())
    .limit(100)
)


@get(
    "/pairing/pending",
    summary="Devices waiting to pair that named the caller's organization (without their codes)",
    opt=allow("pairing", "read"),
)
async def pending(request: Request[Principal, Any, Any], tether: Tether) -> list[WaitingDevice]:
    async with tether.reader.connect() as reads:
        rows = await reads.execute(_WAITING, {"org_id": request.user.org_id, "now": utcnow()})
        return [
            WaitingDevice(r.id, r.name, r.address, r.created_at, r.expires_at) for r in rows.all()
        ]


async def claim(tether: Tether, device_code: str) -> TokenResponse:
    """The device's poll: pending, expired, or its credentials and a session."""
    async with tether.engine.begin() as conn:
        row = (
            await conn.execute(
                sa.select(pairings).where(pairings.c.device_code_hash == digest(device_code))
            )
        ).first()
        if row is None or row.status == "claimed":
            raise Problem(400, "Unknown or used device code.", code="invalid_grant")
        if row.expires_at <= utcnow():
            raise Problem(400, "The pairing code expired; start again.", code="expired_token")
        if row.status == "pending":
            raise Problem(
                428, "Waiting for a user to approve the code.", code="authorization_pending"
            )
        secret = new_secret()
        updated = await conn.execute(
            pairings.update()
            .where(pairings.c.id == row.id, pairings.c.status == "approved")
            .values(status="claimed")
        )
        if updated.rowcount != 1:
            raise Problem(400, "Unknown or used device code.", code="invalid_grant")
        await conn.execute(
            resources.update()
            .where(resources.c.id == row.device_id)
            .values(secret_hash=digest(secret))
        )
        principal = await resource_principal(conn, row.device_id, "device")
        if principal is None:
            raise Problem(400, "Unknown or used device code.", code="invalid_grant")
        return await issue_session(
            conn, tether, principal, device_id=row.device_id, device_secret=secret
        )


router = Router("/", route_handlers=[start, pending])
