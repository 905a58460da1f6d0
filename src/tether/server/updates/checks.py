"""The device side of software updates: check, download, report.

A check takes what a device has installed and its properties and answers four lists
(available, changed, unchanged, unavailable) from the organization's live deployments. Each
offered package carries a download URL with a grant bound to that device and version, so no
device can fetch a blob its rules do not give it, whatever URL or hash it guesses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Response, Router, get, post
from litestar.params import FromPath, JSONBody

from tether._versions import parse_version
from tether.server.db.reads import Reads
from tether.server.db.tables import deployment_reports, deployments, package_versions, resources
from tether.server.files.blobs import blob_response
from tether.server.identity.credentials import Principal
from tether.server.identity.policy import CALLER, allow, own_device
from tether.server.identity.scope import principal_of, resolve_scope, scoped_paths
from tether.server.problems import invalid, not_found
from tether.server.realtime.events import Event
from tether.server.state import ServerState, Tether
from tether.server.updates.deployments import ReportState, record_report
from tether.server.updates.installed import note_installed
from tether.server.updates.packages import LIVE_STATES, checked_version
from tether.server.updates.rules import Test, compile_rules, in_rollout, properties_of

GRANT_TTL = 7 * 24 * 3600
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class InstalledPackage(msgspec.Struct, forbid_unknown_fields=True):
    reference: _Text
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class CheckIn(msgspec.Struct, forbid_unknown_fields=True):
    installed: Annotated[list[InstalledPackage], msgspec.Meta(max_length=1000)] = msgspec.field(
        default_factory=list
    )
    properties: Annotated[dict[str, Any], msgspec.Meta(max_length=200)] = msgspec.field(
        default_factory=dict
    )
    device_id: str | None = None


class PackageOffer(msgspec.Struct, omit_defaults=True):
    reference: str
    version: str
    filename: str
    size: int
    sha256: str
    metadata: dict[str, Any]
    url: str
    deployment_id: str
    signature: str | None = None


class CheckOut(msgspec.Struct):
    available: list[PackageOffer]
    changed: list[PackageOffer]
    unchanged: list[InstalledPackage]
    unavailable: list[str]


class ReportIn(msgspec.Struct, forbid_unknown_fields=True):
    reference: _Text
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    state: ReportState
    reason: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    device_id: str | None = None


class ReportOut(msgspec.Struct):
    deployment_id: str
    deployment_state: str


_LIVE = (
    sa.select(
        deployments.c.id,
        deployments.c.reference,
        deployments.c.rules,
        deployments.c.percentage,
        deployments.c.state,
        package_versions.c.id.label("version_id"),
        package_versions.c.version,
        package_versions.c.filename,
        package_versions.c.size,
        package_versions.c.sha256,
        package_versions.c.metadata,
        package_versions.c.signature,
    )
    .join(package_versions, package_versions.c.id == deployments.c.version_id)
    .where(
        deployments.c.org_id == sa.bindparam("org_id"),
        # Equalities, not in_(): an expanding IN is rendered again on every execution.
        sa.or_(*(deployments.c.state == state for state in LIVE_STATES)),
    )
    .order_by(deployments.c.created_at.desc(), deployments.c.id.desc())
)
_DEVICE = sa.select(resources.c.name, resources.c.document).where(
    resources.c.id == sa.bindparam("device_id"),
    resources.c.org_id == sa.bindparam("org_id"),
    resources.c.kind == "device",
)
_DEVICE_IN_PROJECT = _DEVICE.where(resources.c.project_id == sa.bindparam("project_id"))


async def _device_row(reads: Reads, org_id: str, project_id: str | None, device_id: str) -> Any:
    """The device a user or app named, in the caller's scope (404 otherwise: a made-up id,
    another organization's, or outside the project of the URL)."""
    params = {"device_id": device_id, "org_id": org_id, "project_id": project_id}
    found = await reads.execute(_DEVICE if project_id is None else _DEVICE_IN_PROJECT, params)
    row = found.first()
    if row is None:
        raise not_found("device")
    return row


def _download(org_id: str, device_id: str, version_id: str) -> str:
    """What a download grant allows: this device to fetch this version."""
    return f"download:{org_id}:{device_id}:{version_id}"


def _device_of(principal: Principal, given: str | None) -> str:
    """The device a check or report is about: the caller itself, or the one a user or app
    names."""
    device_id = own_device(principal, given)
    if not device_id:
        raise invalid("Name the device: device_id.", "device_required")
    return device_id


async def _properties(
    tether: ServerState,
    principal: Principal,
    project_id: str | None,
    device_id: str,
    sent: dict[str, Any],
    needed: set[str],
) -> dict[str, Any]:
    """The properties rules see. The device's own record (name, document) is read only when a
    rule asks for more than the check sent, or to make sure a device named by a user exists."""
    props = {**sent, "device_id": device_id}
    if principal.type == "device" and needed <= props.keys():
        return props
    async with tether.reader.connect() as reads:
        row = await _device_row(reads, principal.org_id, project_id, device_id)
    return {**msgspec.json.decode(row.document), **props, "name": row.name}


@dataclass(frozen=True)
class _Live:
    """A live deployment ready for checks: its rules compiled, its version's metadata parsed."""

    id: str
    reference: str
    state: str
    percentage: float
    test: Test
    needs: frozenset[str]
    version_id: str
    version: str
    filename: str
    size: int
    sha256: str
    metadata: dict[str, Any]
    signature: str | None


async def live_deployments(tether: ServerState, org_id: str) -> list[_Live]:
    """The organization's active and paused deployments, newest first (cached briefly)."""
    live: list[_Live] | None = tether.live_deployments.get(org_id)
    if live is not None:
        return live
    async with tether.reader.connect() as reads:
        rows = (await reads.execute(_LIVE, {"org_id": org_id})).all()
    live = [
        _Live(
            id=row.id,
            reference=row.reference,
            state=row.state,
            percentage=row.percentage,
            test=compile_rules(row.rules),
            needs=properties_of(row.rules),
            version_id=row.version_id,
            version=row.version,
            filename=row.filename,
            size=row.size,
            sha256=row.sha256,
            metadata=msgspec.json.decode(row.metadata),
            signature=row.signature,
        )
        for row in rows
    ]
    tether.live_deployments.put(org_id, live)
    return live


@functools.lru_cache(maxsize=4096)
def _same_version(installed: str, assigned: str) -> bool:
    if installed == assigned:
        return True
    try:
        return parse_version(installed) == parse_version(assigned)
    except ValueError:
        return False


async def _resumed(tether: ServerState, device_id: str, paused: list[str]) -> set[str]:
    """The paused deployments this device has already reported on (it keeps those)."""
    if not paused:
        return set()
    async with tether.reader.connect() as reads:
        rows = await reads.execute(
            sa.select(deployment_reports.c.deployment_id).where(
                deployment_reports.c.device_id == device_id,
                deployment_reports.c.deployment_id.in_(paused),
            )
        )
        return set(rows.scalars())


@post(
    scoped_paths("/updates/check"),
    tags=["updates"],
    summary="What a device should install: available, changed, unchanged and unavailable",
    opt=allow("update", "check", target=CALLER),
    status_code=200,
)
async def check(
    data: JSONBody[CheckIn], request: Request[Any, Any, Any], tether: Tether
) -> CheckOut:
    principal = principal_of(request)
    installed = {p.reference: p.version for p in data.installed}
    org_id = principal.org_id
    if "project_id" in request.path_params:
        async with tether.reader.connect() as reads:
            await resolve_scope(reads, request)
    device_id = _device_of(principal, data.device_id)
    live = await live_deployments(tether, org_id)
    needed = set().union(*(d.needs for d in live))
    project_id = request.path_params.get("project_id")
    props = await _properties(tether, principal, project_id, device_id, data.properties, needed)
    if principal.type == "device":
        tether.installed.note(org_id, device_id, installed)
    resumed = await _resumed(tether, device_id, [d.id for d in live if d.state == "paused"])
    assigned: dict[str, _Live] = {}
    for d in live:
        if d.reference in assigned or not in_rollout(d.id, device_id, d.percentage):
            continue
        if d.state == "paused" and not (
            d.id in resumed or _same_version(installed.get(d.reference, ""), d.version)
        ):
            continue
        if d.test(props):
            assigned[d.reference] = d
    prefix = str(request.scope["path"]).removesuffix("check")
    out = CheckOut([], [], [], [])
    for reference, d in assigned.items():
        have = installed.get(reference)
        if have is not None and _same_version(have, d.version):
            out.unchanged.append(InstalledPackage(reference, have))
            continue
        grant = tether.tokens.grant(_download(org_id, device_id, d.version_id), GRANT_TTL)
        offer = PackageOffer(
            reference=reference,
            version=d.version,
            filename=d.filename,
            size=d.size,
            sha256=d.sha256,
            metadata=d.metadata,
            url=f"{prefix}download/{d.version_id}?grant={grant}",
            deployment_id=d.id,
            signature=d.signature,
        )
        (out.available if have is None else out.changed).append(offer)
    out.unavailable = [ref for ref in installed if ref not in assigned]
    return out


@get(
    scoped_paths("/updates/download/{version_id:str}"),
    tags=["updates"],
    summary="Download an offered package (the URL a check gave); honours Range",
    opt=allow("update", "download", target=CALLER, query=("grant",), raw_response="ranged"),
)
async def download(
    version_id: FromPath[str], request: Request[Any, Any, Any], tether: Tether
) -> Response[Any]:
    principal = principal_of(request)
    if principal.type == "device":
        grant = request.query_params.get("grant", "")
        if not tether.tokens.granted(grant, _download(principal.org_id, principal.id, version_id)):
            raise not_found("package")
    async with tether.reader.connect() as reads:
        await resolve_scope(reads, request)
        row = (
            await reads.execute(
                sa.select(package_versions).where(
                    package_versions.c.id == version_id,
                    package_versions.c.org_id == principal.org_id,
                )
            )
        ).first()
    if row is None:
        raise not_found("package")
    return blob_response(request, tether.blobs, row.sha256, row.size, None, row.filename)


@post(
    scoped_paths("/updates/reports"),
    tags=["updates"],
    summary="Report a package's progress on a device: downloading, installed or failed",
    status_code=200,
    opt=allow("update", "report", target=CALLER),
)
async def report(
    data: JSONBody[ReportIn], request: Request[Any, Any, Any], tether: Tether
) -> ReportOut:
    principal = principal_of(request)
    async with tether.engine.begin() as conn:
        _, project_id = await resolve_scope(conn, request)
        device_id = _device_of(principal, data.device_id)
        if principal.type != "device":
            await _device_row(conn, principal.org_id, project_id, device_id)
        deployment = (
            await conn.execute(
                sa.select(deployments)
                .join(package_versions, package_versions.c.id == deployments.c.version_id)
                .where(
                    deployments.c.org_id == principal.org_id,
                    package_versions.c.reference == data.reference,
                    package_versions.c.version == checked_version(data.version),
                )
                .order_by(deployments.c.created_at.desc())
                .limit(1)
            )
        ).first()
        if deployment is None:
            raise not_found("deployment of this package version")
        version = checked_version(data.version)
        state = await record_report(tether, conn, deployment, device_id, data.state, data.reason)
        if data.state == "installed":
            await note_installed(tether, conn, principal.org_id, device_id, data.reference, version)
    reported = {
        "device_id": device_id,
        "deployment_id": deployment.id,
        "reference": data.reference,
        "version": version,
        "state": data.state,
        "reason": data.reason,
    }
    tether.bus.publish(Event(principal.org_id, "report", "created", device_id, reported))
    return ReportOut(deployment.id, state)


router = Router("/", route_handlers=[check, download, report])
