"""What the fleet runs: the versions each device has installed, counted across the fleet, and a
device's update history.

A device says what it has installed in every update check, and a report of an installed
version says it too. Checks are the hot path of a fleet, so a check writes nothing itself: each
process remembers what it last noted for a device, and what changed is written behind, in one
transaction for many devices every half second (`noted.InstalledWrites`). What reads installed
packages here (the counts, a device's history, the `installed[...]` filter) writes what is
pending first; another process's pending changes show within that half second. The counts are
kept a few seconds per organization (dropped when this process writes), so pages that show them
do not count the whole fleet each time; another process's writes show within those seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, get
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.db.cascades import Gone, on_delete
from tether.server.db.engine import upsert, utcnow
from tether.server.db.tables import (
    deployment_reports,
    deployments,
    installed_packages,
    package_versions,
    resources,
)
from tether.server.identity.policy import allow
from tether.server.identity.scope import resolve_scope, scoped_paths
from tether.server.resources.kinds import KINDS, load
from tether.server.state import ServerState, Tether


class VersionCount(msgspec.Struct):
    reference: str
    version: str
    devices: int


class Installed(msgspec.Struct):
    reference: str
    version: str
    updated_at: dt.datetime


class Report(msgspec.Struct):
    deployment_id: str
    deployment: str
    reference: str
    version: str
    state: str
    reason: str | None
    updated_at: dt.datetime


class DeviceUpdates(msgspec.Struct):
    """A device's installed packages and its latest report on each deployment, newest first."""

    installed: list[Installed]
    reports: list[Report]


async def note_installed(
    tether: ServerState,
    conn: AsyncConnection,
    org_id: str,
    device_id: str,
    reference: str,
    version: str,
) -> None:
    """Record a reported installation (in the report's transaction)."""
    values = {"org_id": org_id, "version": version, "updated_at": utcnow()}
    await conn.execute(
        upsert(conn, installed_packages)
        .values(device_id=device_id, reference=reference, **values)
        .on_conflict_do_update(index_elements=["device_id", "reference"], set_=values)
    )
    tether.installed.forget(device_id)
    tether.installed_spread.drop(org_id)


_SPREAD = (
    sa.select(
        installed_packages.c.reference,
        installed_packages.c.version,
        sa.func.count().label("devices"),
    )
    .where(installed_packages.c.org_id == sa.bindparam("org_id"))
    .group_by(installed_packages.c.reference, installed_packages.c.version)
    .order_by(installed_packages.c.reference, sa.func.count().desc(), installed_packages.c.version)
    .limit(1000)
)
_SPREAD_IN_PROJECT = _SPREAD.join_from(
    installed_packages, resources, resources.c.id == installed_packages.c.device_id
).where(resources.c.project_id == sa.bindparam("project_id"))


@get(
    scoped_paths("/updates/installed"),
    tags=["updates"],
    summary="The versions installed across the fleet: how many devices run each",
    opt=allow("package", "read", query=("reference",)),
)
async def spread(request: Request[Any, Any, Any], tether: Tether) -> list[VersionCount]:
    """Counted over the whole fleet, so kept for a few seconds (`installed_spread`)."""
    reference = request.query_params.get("reference")
    await tether.installed.flush()
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request)
        kept: dict[Any, list[VersionCount]] | None = tether.installed_spread.get(org_id)
        if kept is None:
            kept = {}
            tether.installed_spread.put(org_id, kept)
        counted = kept.get((project_id, reference))
        if counted is not None:
            return counted
        query = _SPREAD if project_id is None else _SPREAD_IN_PROJECT
        if reference is not None:
            query = query.where(installed_packages.c.reference == reference)
        params = {"org_id": org_id, "project_id": project_id}
        rows = (await reads.execute(query, params)).all()
    counted = kept[project_id, reference] = [
        VersionCount(row.reference, row.version, row.devices) for row in rows
    ]
    return counted


@get(
    scoped_paths("/devices/{id:str}/updates"),
    tags=["updates"],
    summary="A device's installed packages and its reports on each deployment",
    opt=allow("device", "read", target="id"),
)
async def history(request: Request[Any, Any, Any], tether: Tether) -> DeviceUpdates:
    device_id = request.path_params["id"]
    await tether.installed.flush()
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request)
        await load(reads, KINDS["device"], org_id, project_id, device_id)
        installed = (
            await reads.execute(
                sa.select(installed_packages)
                .where(installed_packages.c.device_id == device_id)
                .order_by(installed_packages.c.reference)
            )
        ).all()
        reports = (
            await reads.execute(
                sa.select(
                    deployment_reports,
                    deployments.c.name.label("deployment"),
                    package_versions.c.reference,
                    package_versions.c.version,
                )
                .join(deployments, deployments.c.id == deployment_reports.c.deployment_id)
                .join(package_versions, package_versions.c.id == deployments.c.version_id)
                .where(deployment_reports.c.device_id == device_id)
                .order_by(deployment_reports.c.updated_at.desc())
                .limit(100)
            )
        ).all()
    return DeviceUpdates(
        [Installed(r.reference, r.version, r.updated_at) for r in installed],
        [
            Report(
                r.deployment_id,
                r.deployment,
                r.reference,
                r.version,
                r.state,
                r.reason,
                r.updated_at,
            )
            for r in reports
        ],
    )


router = Router("/", route_handlers=[spread, history])


@on_delete("device")
async def _forget_device(gone: Gone) -> None:
    """A deleted device's update reports and what it said it has installed."""
    for device_id in gone.ids:
        gone.state.installed.forget(device_id)
    for table in (deployment_reports, installed_packages):
        await gone.conn.execute(table.delete().where(table.c.device_id.in_(gone.ids)))
    gone.state.installed_spread.drop(gone.org_id)
