"""The rules of the `twins` table: a section changes by a merge patch, under an UPDATE
guarded by the version it was read at (so two writers with the same `If-Match` get one
success and one 409), and every change is kept with the section as it then stood, which
brings a device from any version it names to the latest in one step."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from msgspec import Meta
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.db.cascades import Gone, on_delete
from tether.server.db.engine import new_id, upsert, utcnow
from tether.server.db.tables import twin_changes, twins
from tether.server.problems import Problem, conflict
from tether.server.realtime.events import Event
from tether.server.twin.patches import delta, difference, leaves, merge

MAX_SECTION = 64 * 1024
"""Largest section (desired, reported or tags), as JSON bytes: AWS allows 8 KB, Azure 32 KB."""
Section = Literal["desired", "reported", "tags"]
SECTIONS: tuple[Section, ...] = ("desired", "reported", "tags")
ATTEMPTS = 20
"""Tries of a write without `If-Match` that keeps losing the race to other writers."""


class TwinPatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """One change to a twin: a merge patch of one section (null removes a key), or the
    option that clears desired values once reported matches them."""

    desired: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None
    tags: dict[str, Any] | None = None
    clear_when_reported: bool | None = None
    report_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    """A device's own id for a report, so a report sent again is applied once."""


class TwinOut(msgspec.Struct):
    device_id: str
    project_id: str | None
    desired: dict[str, Any]
    reported: dict[str, Any]
    tags: dict[str, Any]
    versions: dict[str, int]
    metadata: dict[str, Any]
    """Per section, each key's dotted path with the time and version it last changed."""
    delta: dict[str, Any]
    """What desired asks that reported does not say yet."""
    pending: int
    clear_when_reported: bool
    updated_at: dt.datetime | None


class Change(msgspec.Struct):
    id: str
    device_id: str
    section: str
    version: int
    patch: dict[str, Any]
    state: dict[str, Any]
    by: str
    at: dt.datetime


def _json(text: str) -> Any:
    return msgspec.json.decode(text)


def _encoded(value: Any, section: str) -> str:
    text = msgspec.json.encode(value)
    if len(text) > MAX_SECTION:
        raise Problem(
            422,
            f"The twin's {section} would be {len(text)} bytes as JSON; at most {MAX_SECTION}.",
            code="too_large",
            extra={"errors": [{"key": section, "source": "body", "message": "too large"}]},
        )
    return text.decode()


def twin_out(device_id: str, row: Any | None, project_id: str | None = None) -> TwinOut:
    if row is None:
        versions: dict[str, int] = dict.fromkeys(SECTIONS, 0)
        return TwinOut(device_id, project_id, {}, {}, {}, versions, {}, {}, 0, False, None)
    desired, reported = _json(row.desired), _json(row.reported)
    return TwinOut(
        device_id=device_id,
        project_id=row.project_id,
        desired=desired,
        reported=reported,
        tags=_json(row.tags),
        versions={s: getattr(row, f"{s}_version") for s in SECTIONS},
        metadata=_json(row.metadata),
        delta=delta(desired, reported),
        pending=row.pending,
        clear_when_reported=bool(row.clear_when_reported),
        updated_at=row.updated_at,
    )


def change_out(row: Any) -> Change:
    return Change(
        row.id,
        row.device_id,
        row.section,
        row.version,
        _json(row.patch),
        _json(row.state),
        row.by,
        row.at,
    )


async def load(conn: Any, device_id: str) -> Any | None:
    query = sa.select(twins).where(twins.c.device_id == device_id)
    return (await conn.execute(query)).first()


async def _ensure(
    conn: AsyncConnection, org_id: str, project_id: str | None, device_id: str
) -> Any:
    """The device's twin row, made empty on first use."""
    row = await load(conn, device_id)
    if row is not None:
        return row
    empty: dict[str, Any] = {
        "device_id": device_id,
        "org_id": org_id,
        "project_id": project_id,
        **{s: "{}" for s in SECTIONS},
        **{f"{s}_version": 0 for s in SECTIONS},
        "metadata": "{}",
        "pending": 0,
        "clear_when_reported": False,
        "updated_at": utcnow(),
    }
    await conn.execute(upsert(conn, twins).values(empty).on_conflict_do_nothing())
    return await load(conn, device_id)


def _noted(metadata: dict[str, Any], section: str, patch: dict[str, Any], version: int) -> None:
    """Record, per dotted path the patch touched, when and at which version it changed."""
    at = utcnow().isoformat()
    keys = metadata.setdefault(section, {})
    for path in leaves(patch):
        keys[path] = {"at": at, "version": version}


async def change(
    conn: AsyncConnection,
    org_id: str,
    project_id: str | None,
    device_id: str,
    section: Section,
    patch: dict[str, Any] | None,
    by: str,
    expected: int | None = None,
    report_id: str | None = None,
    clear_when_reported: bool | None = None,
) -> tuple[TwinOut, list[Change]]:
    """Apply a merge patch to one section (and/or the clearing option), in the caller's
    transaction: the twin after it, and the changes made (none for a report seen before).
    With `expected`, a section no longer at that version is a 409."""
    for _ in range(ATTEMPTS):
        row = await _ensure(conn, org_id, project_id, device_id)
        if report_id is not None and await _seen_report(conn, device_id, report_id):
            return twin_out(device_id, row), []
        version = getattr(row, f"{section}_version")
        if expected is not None and expected != version:
            raise conflict(
                f"The twin's {section} is at version {version}, not {expected}: read it again."
            )
        documents = {s: _json(getattr(row, s)) for s in SECTIONS}
        versions = {s: getattr(row, f"{s}_version") for s in SECTIONS}
        metadata = _json(row.metadata)
        clearing = row.clear_when_reported if clear_when_reported is None else clear_when_reported
        made: list[tuple[Section, dict[str, Any]]] = []
        if patch:
            documents[section] = merge(documents[section], patch)
            made.append((section, patch))
        if clearing and section in ("reported", "desired"):
            cleared = delta(documents["desired"], documents["reported"])
            if cleared != documents["desired"]:
                made.append(("desired", difference(documents["desired"], cleared)))
                documents["desired"] = cleared
        now = utcnow()
        values: dict[str, Any] = {"updated_at": now, "clear_when_reported": clearing}
        changes = []
        for changed, applied in made:
            versions[changed] += 1
            _noted(metadata, changed, applied, versions[changed])
            values[changed] = _encoded(documents[changed], changed)
            values[f"{changed}_version"] = versions[changed]
            who = by if changed == section else "tether"
            changes.append(
                {
                    "id": new_id(),
                    "org_id": org_id,
                    "device_id": device_id,
                    "section": changed,
                    "version": versions[changed],
                    "patch": msgspec.json.encode(applied).decode(),
                    "state": values[changed],
                    "by": who,
                    "report_id": report_id if changed == section else None,
                    "at": now,
                }
            )
        values["metadata"] = msgspec.json.encode(metadata).decode()
        values["pending"] = len(leaves(delta(documents["desired"], documents["reported"])))
        guard = [twins.c.device_id == device_id]
        guard += [twins.c[f"{s}_version"] == getattr(row, f"{s}_version") for s in SECTIONS]
        moved = await conn.execute(twins.update().where(*guard).values(values))
        if moved.rowcount != 1:
            if expected is not None:
                raise conflict(f"The twin's {section} changed meanwhile: read it again.")
            continue
        if changes:
            await conn.execute(twin_changes.insert(), changes)
        return twin_out(device_id, await load(conn, device_id)), [
            change_out(_Row(c)) for c in changes
        ]
    raise Problem(503, "The twin is changing too often; try again.", code="unavailable")


class _Row(dict[str, Any]):
    def __getattr__(self, name: str) -> Any:
        return self[name]


async def _seen_report(conn: AsyncConnection, device_id: str, report_id: str) -> bool:
    query = sa.select(twin_changes.c.id).where(
        twin_changes.c.device_id == device_id, twin_changes.c.report_id == report_id
    )
    return (await conn.execute(query)).first() is not None


async def catch_up(conn: Any, device_id: str, since: int) -> dict[str, Any]:
    """What a device that applied desired up to version `since` needs: the latest version,
    the whole desired, and one merge patch from its version to the latest (`replace` when its
    version is no longer kept: then it takes `desired` whole)."""
    row = await load(conn, device_id)
    desired = {} if row is None else _json(row.desired)
    version = 0 if row is None else row.desired_version
    if since == version:
        return {"version": version}
    if since == 0:
        return {"version": version, "patch": difference({}, desired), "desired": desired}
    query = sa.select(twin_changes.c.state).where(
        twin_changes.c.device_id == device_id,
        twin_changes.c.section == "desired",
        twin_changes.c.version == since,
    )
    before = (await conn.execute(query)).scalar()
    if before is None or since > version:
        return {"version": version, "desired": desired, "replace": True}
    return {"version": version, "patch": difference(_json(before), desired), "desired": desired}


def events_of(org_id: str, project_id: str | None, changes: list[Change]) -> list[Event]:
    """One `twin` event per change (the patch and the version it made), for who may read it."""
    return [
        Event(
            org_id,
            "twin",
            "updated",
            c.device_id,
            {
                "device_id": c.device_id,
                "project_id": project_id,
                "section": c.section,
                "version": c.version,
                "patch": c.patch,
            },
        )
        for c in changes
    ]


@on_delete("device")
async def _forget_twins(gone: Gone) -> None:
    await gone.conn.execute(twins.delete().where(twins.c.device_id.in_(gone.ids)))
    await gone.conn.execute(twin_changes.delete().where(twin_changes.c.device_id.in_(gone.ids)))
