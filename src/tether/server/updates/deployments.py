"""Deployments: which version of a package goes to which devices, and how the rollout goes.

A deployment names a package version, rules over device properties and a percentage
(`rules.py`). It is active (offered), paused (kept by the devices that already have or started
it, offered to no one new) or aborted (offered to no one; an older deployment of the package
takes over again). Devices report per package; the counts per state are the deployment's
progress, and a failure-rate threshold aborts it on its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.db.engine import new_id, upsert, utcnow
from tether.server.db.pages import Page, filters_of, list_page, narrowed, page_limit
from tether.server.db.reads import Reads
from tether.server.db.tables import deployment_reports, deployments, package_versions
from tether.server.identity.policy import allow
from tether.server.identity.scope import principal_of
from tether.server.problems import conflict, invalid, not_found
from tether.server.realtime.events import Event
from tether.server.state import ServerState, Tether
from tether.server.updates.packages import LIVE_STATES, find_version, org_key
from tether.server.updates.rules import Rule, Rules, check_rules

State = Literal["active", "paused", "aborted"]
ReportState = Literal["downloading", "installed", "failed"]
Percentage = Annotated[float, msgspec.Meta(ge=0, le=100)]
Threshold = Annotated[float, msgspec.Meta(gt=0, le=1)]
MinReports = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Name = Annotated[str, msgspec.Meta(max_length=200)]


class DeploymentIn(msgspec.Struct, forbid_unknown_fields=True):
    reference: str
    version: str
    rules: Rules = msgspec.field(default_factory=list)
    percentage: Percentage = 100.0
    name: Name = ""
    failure_threshold: Threshold | None = None
    min_reports: MinReports = 10


class DeploymentPatch(msgspec.Struct, forbid_unknown_fields=True):
    state: State | msgspec.UnsetType = msgspec.UNSET
    percentage: Percentage | msgspec.UnsetType = msgspec.UNSET
    rules: Rules | msgspec.UnsetType = msgspec.UNSET
    name: Name | msgspec.UnsetType = msgspec.UNSET
    failure_threshold: Threshold | msgspec.UnsetType | None = msgspec.UNSET
    min_reports: MinReports | msgspec.UnsetType = msgspec.UNSET


class DeploymentOut(msgspec.Struct):
    id: str
    name: str
    reference: str
    version: str
    version_id: str
    rules: list[Any]
    percentage: float
    state: str
    failure_threshold: float | None
    min_reports: int
    counts: dict[str, int]
    created_at: dt.datetime
    updated_at: dt.datetime


_SELECT = sa.select(deployments, package_versions.c.version).join(
    package_versions, package_versions.c.id == deployments.c.version_id
)

_IN_ORG = _SELECT.where(deployments.c.org_id == sa.bindparam("org_id"))


def _row(row: Any) -> Any:
    return row


def _encode_rules(rules: list[Rule]) -> str:
    check_rules(rules)
    return msgspec.json.encode(rules).decode()


def heard(tether: ServerState) -> Callable[[Event], None]:
    """What another process's deployment change means here: its organization's cached live
    deployments go, so the next check reads them anew."""

    def forget(event: Event) -> None:
        if event.type == "deployment":
            tether.live_deployments.drop(event.org_id)

    return forget


def changed(tether: ServerState, event: Event) -> None:
    """Announce a deployment change, and forget the organization's cached live deployments."""
    tether.live_deployments.drop(event.org_id)
    tether.bus.publish(event)


async def counts_for(conn: Reads, deployment_ids: list[str]) -> dict[str, dict[str, int]]:
    """Each deployment's reports per state, in one query for a whole page."""
    counts: dict[str, dict[str, int]] = {
        d: {"downloading": 0, "installed": 0, "failed": 0} for d in deployment_ids
    }
    if deployment_ids:
        rows = await conn.execute(
            sa.select(
                deployment_reports.c.deployment_id,
                deployment_reports.c.state,
                sa.func.count().label("n"),
            )
            .where(deployment_reports.c.deployment_id.in_(deployment_ids))
            .group_by(deployment_reports.c.deployment_id, deployment_reports.c.state)
        )
        for row in rows.all():
            counts[row.deployment_id][row.state] = row.n
    return counts


async def counts_of(conn: Reads, deployment_id: str) -> dict[str, int]:
    return (await counts_for(conn, [deployment_id]))[deployment_id]


def _out(row: Any, counts: dict[str, int]) -> DeploymentOut:
    return DeploymentOut(
        id=row.id,
        name=row.name,
        reference=row.reference,
        version=row.version,
        version_id=row.version_id,
        rules=msgspec.json.decode(row.rules),
        percentage=row.percentage,
        state=row.state,
        failure_threshold=row.failure_threshold,
        min_reports=row.min_reports,
        counts=counts,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _load(conn: Reads, org_id: str, deployment_id: str) -> Any:
    row = (
        await conn.execute(
            _SELECT.where(deployments.c.org_id == org_id, deployments.c.id == deployment_id)
        )
    ).first()
    if row is None:
        raise not_found("deployment")
    return row


async def _show(conn: Reads, org_id: str, deployment_id: str) -> DeploymentOut:
    return _out(await _load(conn, org_id, deployment_id), await counts_of(conn, deployment_id))


@post(
    "/deployments",
    tags=["deployments"],
    summary="Roll a package version out",
    status_code=201,
    opt=allow("deployment", "write"),
)
async def create_deployment(
    data: JSONBody[DeploymentIn], request: Request[Any, Any, Any], tether: Tether
) -> DeploymentOut:
    org_id = principal_of(request).org_id
    rules = _encode_rules(data.rules)
    now = utcnow()
    async with tether.engine.begin() as conn:
        version = await find_version(conn, org_id, data.reference, data.version)
        if version.signature is None and await org_key(conn, org_id) is not None:
            raise invalid(
                f"{version.reference} {version.version} was published unsigned, before this "
                "organization had a signing key: devices would refuse it. Publish it again "
                "under a new version.",
                "unsigned_version",
            )
        deployment_id = new_id()
        await conn.execute(
            deployments.insert().values(
                id=deployment_id,
                org_id=org_id,
                name=data.name or f"{version.reference} {version.version}",
                version_id=version.id,
                reference=version.reference,
                rules=rules,
                percentage=data.percentage,
                state="active",
                failure_threshold=data.failure_threshold,
                min_reports=data.min_reports,
                created_at=now,
                updated_at=now,
            )
        )
        out = await _show(conn, org_id, deployment_id)
    changed(tether, Event(org_id, "deployment", "created", out.id, out))
    return out


@get(
    "/deployments",
    tags=["deployments"],
    summary="Deployments, oldest first",
    opt=allow("deployment", "read", query=("limit", "after", "reference", "state")),
)
async def list_deployments(request: Request[Any, Any, Any], tether: Tether) -> Page[DeploymentOut]:
    limit = page_limit(request, tether.settings)
    given = filters_of(request, ("reference", "state"))
    query = narrowed(_IN_ORG, deployments, tuple(given))
    params = {"org_id": principal_of(request).org_id, **given}
    async with tether.reader.connect() as reads:
        page = await list_page(reads, request, query, deployments.c.id, limit, _row, params)
        counts = await counts_for(reads, [row.id for row in page.results])
    return Page(page.total, [_out(row, counts[row.id]) for row in page.results], page.next)


@get(
    "/deployments/{id:str}",
    tags=["deployments"],
    summary="A deployment and its progress",
    opt=allow("deployment", "read"),
)
async def read_deployment(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> DeploymentOut:
    org_id = principal_of(request).org_id
    async with tether.reader.connect() as reads:
        return await _show(reads, org_id, id)


@patch(
    "/deployments/{id:str}",
    tags=["deployments"],
    summary="Pause, resume or abort a deployment, or change its rules and percentage",
    opt=allow("deployment", "write"),
)
async def update_deployment(
    id: FromPath[str],
    data: JSONBody[DeploymentPatch],
    request: Request[Any, Any, Any],
    tether: Tether,
) -> DeploymentOut:
    org_id = principal_of(request).org_id
    changes = {
        name: value
        for name in DeploymentPatch.__struct_fields__
        if (value := getattr(data, name)) is not msgspec.UNSET
    }
    if "rules" in changes:
        changes["rules"] = _encode_rules(data.rules)  # type: ignore[arg-type]
    async with tether.engine.begin() as conn:
        row = await _load(conn, org_id, id)
        if row.state == "aborted" and changes:
            raise conflict("An aborted deployment cannot change; create a new one.", "aborted")
        if changes:
            await conn.execute(
                deployments.update()
                .where(deployments.c.id == id)
                .values(**changes, updated_at=utcnow())
            )
        out = await _show(conn, org_id, id)
    changed(tether, Event(org_id, "deployment", "updated", out.id, out))
    return out


@delete(
    "/deployments/{id:str}",
    tags=["deployments"],
    summary="Delete a deployment",
    opt=allow("deployment", "write"),
)
async def delete_deployment(
    id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> None:
    org_id = principal_of(request).org_id
    async with tether.engine.begin() as conn:
        gone = await conn.execute(
            deployments.delete().where(deployments.c.org_id == org_id, deployments.c.id == id)
        )
    if gone.rowcount != 1:
        raise not_found("deployment")
    changed(tether, Event(org_id, "deployment", "deleted", id, None))


async def record_report(
    tether: ServerState,
    conn: AsyncConnection,
    deployment: Any,
    device_id: str,
    state: ReportState,
    reason: str | None,
) -> str:
    """Store a device's report on a deployment; abort the deployment when its failure rate
    reaches the threshold, decided on every report that finishes a device (a success can be the
    one that reaches `min_reports`). Returns the deployment's state afterwards."""
    now = utcnow()
    values = {"state": state, "reason": reason, "updated_at": now}
    await conn.execute(
        upsert(conn, deployment_reports)
        .values(deployment_id=deployment.id, device_id=device_id, **values)
        .on_conflict_do_update(index_elements=["deployment_id", "device_id"], set_=values)
    )
    threshold = deployment.failure_threshold
    finishing = state in ("installed", "failed")
    if not finishing or threshold is None or deployment.state not in LIVE_STATES:
        return str(deployment.state)
    counts = await counts_of(conn, deployment.id)
    finished = counts["installed"] + counts["failed"]
    if finished < deployment.min_reports or counts["failed"] < threshold * finished:
        return str(deployment.state)
    await conn.execute(
        deployments.update()
        .where(deployments.c.id == deployment.id)
        .values(state="aborted", updated_at=now)
    )
    changed(
        tether,
        Event(
            deployment.org_id,
            "deployment",
            "updated",
            deployment.id,
            {"id": deployment.id, "state": "aborted", "counts": counts, "reason": "failure_rate"},
        ),
    )
    return "aborted"


router = Router(
    "/",
    route_handlers=[
        create_deployment,
        list_deployments,
        read_deployment,
        update_deployment,
        delete_deployment,
    ],
)
