"""The rules of the `commands` table: what a command is, how it is created (once per
idempotency key), and each change of state as an UPDATE guarded by the states it may leave,
so that whoever loses a race changes nothing and says so."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from msgspec import Meta
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tether.server.db.cascades import Gone, on_delete
from tether.server.db.engine import in_sqlite_transaction, new_id, utcnow
from tether.server.db.prepared import prepare
from tether.server.db.tables import command_groups, commands
from tether.server.identity.credentials import Principal
from tether.server.inputs import MAX_TIME
from tether.server.problems import Problem, conflict
from tether.server.realtime.events import Event

MAX_PAYLOAD = 64 * 1024
"""Largest payload, result or progress of a command, as JSON bytes."""
DEFAULT_TTL = 86_400.0
MAX_TTL = 30 * 86_400.0
DEFAULT_TIMEOUT = 300.0
IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)
MAX_DEVICES = 10_000
"""Most devices one command may go to at once."""

UNDELIVERED = ("queued", "sent")
OPEN = ("queued", "sent", "delivered", "in_progress")
ANSWERS = ("succeeded", "failed", "rejected")
FINAL = (*ANSWERS, "timed_out", "expired", "canceled")
STATES = (*OPEN, *FINAL)
State = Literal[
    "queued",
    "sent",
    "delivered",
    "in_progress",
    "succeeded",
    "failed",
    "rejected",
    "timed_out",
    "expired",
    "canceled",
]

Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
Key = Annotated[str, Meta(min_length=1, max_length=200)]
Seconds = Annotated[float, Meta(gt=0, le=MAX_TTL)]
Id = Annotated[str, Meta(min_length=1, max_length=36)]


class CommandIn(msgspec.Struct, forbid_unknown_fields=True):
    """A command to one device."""

    name: Name
    payload: Any = None
    idempotency_key: Key | None = None
    """The same key again within 24 hours gives the same command, never a second one."""
    ttl: Seconds = DEFAULT_TTL
    """Seconds the command may wait to be delivered before it expires (at most 30 days)."""
    timeout: Seconds = DEFAULT_TIMEOUT
    """Seconds the device has to answer once it has the command, before it times out."""


class CommandsIn(CommandIn, forbid_unknown_fields=True):
    """A command to many devices: by their ids, or by the device list's filters."""

    device_ids: Annotated[list[Id], Meta(min_length=1, max_length=MAX_DEVICES)] | None = None
    filter: dict[str, Any] | None = None
    """The device list's filters: location_id, zone_id, name, project_id, online, document
    and installed (each an object of fields, as their query parameters take them)."""


class AnswerIn(msgspec.Struct, forbid_unknown_fields=True):
    """A device's answer to a command."""

    state: Literal["succeeded", "failed", "rejected"]
    result: Any = None
    error: Annotated[str, Meta(max_length=2000)] | None = None


class ProgressIn(msgspec.Struct, forbid_unknown_fields=True):
    progress: Any = None


class CommandOut(msgspec.Struct):
    id: str
    device_id: str
    project_id: str | None
    group_id: str | None
    name: str
    payload: Any
    state: str
    idempotency_key: str | None
    sender: str
    timeout: float
    created_at: dt.datetime
    expires_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    answered_at: dt.datetime | None
    progress: Any
    result: Any
    error: str | None


class GroupOut(msgspec.Struct):
    """A command sent to many devices, with how many are in each state."""

    id: str
    project_id: str | None
    name: str
    payload: Any
    idempotency_key: str | None
    sender: str
    total: int
    counts: dict[str, int]
    done: bool
    """Every command of the group is in a final state."""
    created_at: dt.datetime


def _json(text: str | None) -> Any:
    return None if text is None else msgspec.json.decode(text)


def out(row: Any) -> CommandOut:
    return CommandOut(
        id=row.id,
        device_id=row.device_id,
        project_id=row.project_id,
        group_id=row.group_id,
        name=row.name,
        payload=_json(row.payload),
        state=row.state,
        idempotency_key=row.idempotency_key,
        sender=row.sender,
        timeout=float(row.timeout),
        created_at=row.created_at,
        expires_at=row.expires_at,
        sent_at=row.sent_at,
        delivered_at=row.delivered_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        answered_at=row.answered_at,
        progress=_json(row.progress),
        result=_json(row.result),
        error=row.error,
    )


def group_out(row: Any, counts: dict[str, int]) -> GroupOut:
    return GroupOut(
        id=row.id,
        project_id=row.project_id,
        name=row.name,
        payload=_json(row.payload),
        idempotency_key=row.idempotency_key,
        sender=row.sender,
        total=row.total,
        counts=counts,
        done=sum(counts.get(s, 0) for s in FINAL) >= row.total,
        created_at=row.created_at,
    )


def events_of(rows: Sequence[Any], action: Literal["created", "updated"]) -> list[Event]:
    """The resource events of changed rows: each state change is seen by who may read it."""
    return [Event(row.org_id, "command", action, row.id, out(row)) for row in rows]


def encoded(value: Any, what: str) -> str:
    """`value` as the JSON text a command stores; 422 beyond `MAX_PAYLOAD`."""
    text = msgspec.json.encode(value)
    if len(text) > MAX_PAYLOAD:
        raise Problem(
            422,
            f"The {what} is {len(text)} bytes as JSON; at most {MAX_PAYLOAD}.",
            code="too_large",
            extra={"errors": [{"key": what, "source": "body", "message": "too large"}]},
        )
    return text.decode()


def sender_of(principal: Principal) -> str:
    """Who sent a command, as `type:id` (a token acts for its owner)."""
    return f"{principal.type}:{principal.id}"


async def kept_key(
    conn: AsyncConnection, table: sa.Table, org_id: str, key: str | None
) -> Any | None:
    """The row an idempotency key already names in the last 24 hours; an older row lets go of
    the key, so it may name a new one."""
    if key is None:
        return None
    row = (
        await conn.execute(
            sa.select(table).where(table.c.org_id == org_id, table.c.idempotency_key == key)
        )
    ).first()
    if row is None:
        return None
    if row.created_at >= utcnow() - IDEMPOTENCY_WINDOW:
        return row
    await conn.execute(table.update().where(table.c.id == row.id).values(idempotency_key=None))
    return None


async def insert(
    conn: AsyncConnection,
    org_id: str,
    devices: Sequence[tuple[str, str | None]],
    data: CommandIn,
    sender: str,
    group_id: str | None = None,
) -> list[Any]:
    """One queued command per (device id, project id), in the caller's transaction."""
    now = utcnow()
    payload = encoded(data.payload, "payload")
    expires = now + dt.timedelta(seconds=min(data.ttl, MAX_TIME))
    rows = [
        {
            "id": new_id(),
            "org_id": org_id,
            "project_id": project_id,
            "device_id": device_id,
            "group_id": group_id,
            "name": data.name,
            "payload": payload,
            "state": "queued",
            "idempotency_key": data.idempotency_key if group_id is None else None,
            "sender": sender,
            "timeout": data.timeout,
            "created_at": now,
            "expires_at": expires,
        }
        for device_id, project_id in devices
    ]
    if rows:
        await conn.execute(commands.insert(), rows)
    return [_Row(row) for row in rows]


class _Row(dict[str, Any]):
    """A row as it now stands (just inserted, or changed in memory), read like a result row
    (every column, None where unset); a copy, so later changes leave it as it was."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(values)

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


async def insert_group(
    conn: AsyncConnection,
    org_id: str,
    project_id: str | None,
    data: CommandIn,
    sender: str,
    total: int,
) -> Any:
    row = {
        "id": new_id(),
        "org_id": org_id,
        "project_id": project_id,
        "name": data.name,
        "payload": encoded(data.payload, "payload"),
        "idempotency_key": data.idempotency_key,
        "sender": sender,
        "total": total,
        "created_at": utcnow(),
    }
    await conn.execute(command_groups.insert(), row)
    return _Row(row)


async def counts_of(conn: Any, group_id: str) -> dict[str, int]:
    rows = await conn.execute(
        sa.select(commands.c.state, sa.func.count().label("n"))
        .where(commands.c.group_id == group_id)
        .group_by(commands.c.state)
    )
    return {row.state: row.n for row in rows.all()}


async def _move(
    conn: AsyncConnection, where: sa.ColumnElement[bool], sources: Sequence[str], values: Any
) -> list[Any]:
    """Move the rows `where` selects that are in one of `sources`: the rows it changed."""
    statement = (
        commands.update()
        .where(where, commands.c.state.in_(sources))
        .values(values)
        .returning(*commands.c)
    )
    return list((await conn.execute(statement)).all())


async def mark_sent(conn: AsyncConnection, sent: dict[str, dt.datetime]) -> list[Any]:
    """Written to the device's socket (each id with when); those still queued, one statement
    for the commands written at the same moment."""
    by_time: dict[dt.datetime, list[str]] = {}
    for command_id, at in sent.items():
        by_time.setdefault(at, []).append(command_id)
    moved: list[Any] = []
    for at, ids in by_time.items():
        for start in range(0, len(ids), 500):
            chunk = commands.c.id.in_(ids[start : start + 500])
            moved += await _move(conn, chunk, ("queued",), {"state": "sent", "sent_at": at})
    return moved


@dataclass(frozen=True)
class Answerer:
    """Who acknowledges and answers: a device, its own commands only; a person or an app
    (speaking for devices that do not run the SDK), any command of its organization."""

    org_id: str
    device_id: str | None


@dataclass(frozen=True)
class DeviceChange:
    """What a device (or who answers for it) says about one of its commands: it stored it
    (`ack`, with when it was written to its socket if that is not stored yet), how far it got
    (`progress`, as JSON text) or its `answer`."""

    kind: Literal["ack", "progress", "answer"]
    by: Answerer
    command_id: str
    sent_at: dt.datetime | None = None
    progress: str | None = None
    answer: AnswerIn | None = None
    result: str | None = None
    """The answer's result as JSON text (checked for size before it is queued)."""
    at: dt.datetime = field(default_factory=utcnow)
    """When the server received it: the time the command was delivered, started or answered."""


def transition(row: dict[str, Any], change: DeviceChange, now: dt.datetime) -> dict[str, Any]:
    """The columns `change` sets on a command as it stands (none when it changes nothing):
    the state machine, as a rule over one row.

    An acknowledgement moves an undelivered command to delivered, its answer due `timeout`
    seconds from now. Progress moves an open one to in_progress. An answer ends an open
    command in its state; one that timed out (or was canceled or expired while the device had
    it) keeps its state and records the late answer. A second answer changes nothing."""
    state = row["state"]
    due = now + dt.timedelta(seconds=min(float(row["timeout"]), MAX_TTL))
    if change.kind == "ack":
        if state not in UNDELIVERED:
            return {}
        return {
            "state": "delivered",
            "delivered_at": now,
            "sent_at": row["sent_at"] or change.sent_at or now,
            "deadline": due,
        }
    if change.kind == "progress":
        if state not in OPEN:
            return {}
        return {
            "state": "in_progress",
            "progress": change.progress,
            "started_at": row["started_at"] or now,
            "delivered_at": row["delivered_at"] or now,
            "sent_at": row["sent_at"] or now,
            "deadline": row["deadline"] or due,
        }
    if row["answered_at"] is not None or change.answer is None:
        return {}
    answered = {"answered_at": now, "result": change.result, "error": change.answer.error}
    if state in OPEN:
        answered |= {"state": change.answer.state, "finished_at": now}
    return answered


def answer_of(by: Answerer, command_id: str, data: AnswerIn) -> DeviceChange:
    """An answer as a change, its result checked for size first."""
    result = None if data.result is None else encoded(data.result, "result")
    return DeviceChange("answer", by, command_id, answer=data, result=result)


CHANGING = (
    *("state", "sent_at", "delivered_at", "started_at", "finished_at", "deadline"),
    *("answered_at", "progress", "result", "error"),
)
_APPLY = (
    commands.update()
    .where(commands.c.id == sa.bindparam("changed_id"))
    .values({column: sa.bindparam(f"new_{column}") for column in CHANGING})
)


_ONE = sa.select(commands).where(commands.c.id == sa.bindparam("command_id"))


def _decide(
    current: dict[str, dict[str, Any]], changes: Sequence[DeviceChange]
) -> tuple[list[tuple[Any, bool] | Problem], dict[str, dict[str, Any]]]:
    """Each change applied in order to the rows as they stand (`current`, updated in place):
    the outcome of each (the row after it and whether it moved, or a 404 for a command its
    sender may not answer) and the rows that changed."""
    outcomes: list[tuple[Any, bool] | Problem] = []
    changed: dict[str, dict[str, Any]] = {}
    for change in changes:
        row = current.get(change.command_id)
        by = change.by
        if (
            row is None
            or row["org_id"] != by.org_id
            or (by.device_id is not None and row["device_id"] != by.device_id)
        ):
            outcomes.append(Problem(404, "No such command.", code="not_found"))
            continue
        values = transition(row, change, change.at)
        row.update(values)
        if values:
            changed[row["id"]] = row
        outcomes.append((_Row(row), bool(values)))
    return outcomes, changed


def _written(changed: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"changed_id": i, **{f"new_{c}": row[c] for c in CHANGING}} for i, row in changed.items()
    ]


async def apply(
    engine: AsyncEngine, changes: Sequence[DeviceChange]
) -> list[tuple[Any, bool] | Problem]:
    """Apply devices' changes in order, in one transaction with one read and one write for
    them all. The rows are locked for the transaction (PostgreSQL); on SQLite, which has one
    writer at a time, the whole transaction is one call on the writer's thread."""
    ids = list(dict.fromkeys(change.command_id for change in changes))
    if engine.dialect.name == "sqlite":
        read, write = prepare(_ONE, engine.dialect), prepare(_APPLY, engine.dialect)

        def work(db: sqlite3.Connection) -> list[tuple[Any, bool] | Problem]:
            current = {}
            for command_id in ids:
                found = read.shape(db.execute(read.sql, [command_id]).fetchall())
                if found:
                    current[command_id] = found[0]._asdict()
            outcomes, changed = _decide(current, changes)
            if changed:
                db.executemany(write.sql, [write.arguments(v) for v in _written(changed)])
            return outcomes

        return await in_sqlite_transaction(engine, work)
    async with engine.begin() as conn:
        current = {}
        for start in range(0, len(ids), 500):
            query = sa.select(commands).where(commands.c.id.in_(ids[start : start + 500]))
            for found in (await conn.execute(query.with_for_update())).all():
                current[found.id] = dict(found._mapping)
        outcomes, changed = _decide(current, changes)
        if changed:
            await conn.execute(_APPLY, _written(changed))
    return outcomes


async def cancel(conn: AsyncConnection, org_id: str, command_id: str) -> Any:
    """A person takes a command back before the device has it; 409 once it has."""
    moved = await _move(
        conn,
        sa.and_(commands.c.id == command_id, commands.c.org_id == org_id),
        UNDELIVERED,
        {"state": "canceled", "finished_at": utcnow()},
    )
    if not moved:
        raise conflict("The device has this command already (or it ended): it cannot be canceled.")
    return moved[0]


async def sweep(conn: AsyncConnection) -> list[Any]:
    """End what ran out of time: undelivered commands past their time to live expire, and
    delivered ones past their deadline time out. Safe on every node at once: each row moves
    once, for whichever node's UPDATE reaches it first."""
    now = utcnow()
    expired = await _move(
        conn, commands.c.expires_at <= now, UNDELIVERED, {"state": "expired", "finished_at": now}
    )
    timed_out = await _move(
        conn,
        commands.c.deadline <= now,
        ("delivered", "in_progress"),
        {"state": "timed_out", "finished_at": now},
    )
    return expired + timed_out


async def undelivered(conn: Any, device_id: str) -> list[Any]:
    """A device's commands still to deliver, oldest first: its queue."""
    rows = await conn.execute(
        sa.select(commands)
        .where(
            commands.c.device_id == device_id,
            commands.c.state.in_(UNDELIVERED),
            commands.c.expires_at > utcnow(),
        )
        .order_by(commands.c.id)
    )
    return list(rows.all())


@on_delete("device")
async def _forget_commands(gone: Gone) -> None:
    await gone.conn.execute(commands.delete().where(commands.c.device_id.in_(gone.ids)))


@on_delete("project")
async def _forget_groups(gone: Gone) -> None:
    await gone.conn.execute(
        command_groups.delete().where(command_groups.c.project_id.in_(gone.ids))
    )
