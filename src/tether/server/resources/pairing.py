"""Approving a pairing code (`identity.pairing`): a signed-in user types the code a device
shows, and that creates the device in the user's organization; the device's next poll hands
it its own id and secret. Here, beside the resources, because approval makes a device."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, post
from litestar.params import JSONBody

from tether.server.db.engine import utcnow
from tether.server.db.tables import pairings
from tether.server.identity.credentials import Principal
from tether.server.identity.pairing import normalise_code
from tether.server.identity.policy import allow
from tether.server.problems import Problem
from tether.server.realtime.events import Event
from tether.server.resources.kinds import ResourceOut, insert_resource
from tether.server.state import Tether


class ApproveRequest(msgspec.Struct, forbid_unknown_fields=True):
    user_code: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


@post(
    "/pairing/approve",
    status_code=200,
    summary="Approve a pairing code: creates the device (its secret goes to the device only)",
    opt=allow("pairing", "approve"),
)
async def approve(
    data: JSONBody[ApproveRequest], request: Request[Principal, Any, Any], tether: Tether
) -> ResourceOut:
    principal = request.user
    code = normalise_code(data.user_code)
    guesses = f"pairing-approve:{principal.id}"
    tether.limiter.check(guesses)
    async with tether.reader.connect() as reads:
        row = (await reads.execute(sa.select(pairings).where(pairings.c.user_code == code))).first()
    if (
        row is None
        or row.status != "pending"
        or row.expires_at <= utcnow()
        or row.wants_org_id not in (None, principal.org_id)
    ):
        await tether.limiter.failed(guesses)
        raise Problem(404, "No pending pairing has this code.", code="not_found")
    async with tether.engine.begin() as conn:
        device = await insert_resource(
            conn,
            org_id=principal.org_id,
            kind="device",
            project_id=None,
            name=data.name or row.name or f"device-{code[:4].lower()}",
            document={},
        )
        claimed = await conn.execute(
            pairings.update()
            .where(pairings.c.id == row.id, pairings.c.status == "pending")
            .values(status="approved", org_id=principal.org_id, device_id=device.id)
        )
        if claimed.rowcount != 1:
            raise Problem(409, "This code was approved meanwhile.", code="conflict")
    device = msgspec.structs.replace(device, secret=None)
    tether.bus.publish(Event(principal.org_id, "device", "created", device.id, device))
    return device


router = Router("/", route_handlers=[approve])
