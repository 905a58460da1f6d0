"""Move, copy and remove of files and folder trees, as tasks the caller polls.

A task is recorded before it runs and carried out in one transaction. The server process that
runs it holds its lease (`LEASE` seconds, renewed while it works), taken with one conditional
UPDATE, so of the processes of a cluster exactly one runs a task. A task whose lease ran out
(its server stopped under it) left nothing behind, and any process takes it over: at start,
and every `SWEEP` seconds after.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Literal

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, get, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from tether._paths import ancestors, parent_of
from tether.server.db.engine import RowView, new_id, utcnow
from tether.server.db.tables import file_tasks, files
from tether.server.files.tree import checked, find_entry, make_folders, under, where
from tether.server.identity.policy import allow
from tether.server.identity.scope import scoped_paths, storage_scope
from tether.server.problems import Problem, conflict, invalid, not_found
from tether.server.state import ServerState, Tether

logger = logging.getLogger("tether.server")


class TaskIn(msgspec.Struct, forbid_unknown_fields=True):
    op: Literal["move", "copy", "remove"]
    path: str
    target: str | None = None


class TaskOut(msgspec.Struct, omit_defaults=True):
    id: str
    op: str
    path: str
    status: str
    progress: float
    created_at: dt.datetime
    updated_at: dt.datetime
    target: str | None = None
    error: str | None = None


def _task(row: Any) -> TaskOut:
    return TaskOut(
        id=row.id,
        op=row.op,
        path=row.path,
        status=row.status,
        progress=row.progress,
        created_at=row.created_at,
        updated_at=row.updated_at,
        target=row.target,
        error=row.error,
    )


@post(
    scoped_paths("/files/tasks"),
    tags=["files"],
    summary="Move, copy or remove a file or folder tree, as a task",
    status_code=202,
    opt=allow("file", "write"),
)
async def start_task(
    request: Request[Any, Any, Any], tether: Tether, data: JSONBody[TaskIn]
) -> TaskOut:
    path = checked(data.path)
    target = None
    if data.op == "remove":
        if data.target is not None:
            raise invalid("remove takes no target.")
    else:
        target = checked(data.target)
        if target == path or target.startswith(path + "/"):
            raise invalid(f"Cannot {data.op} {path} into itself.")
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
        await find_entry(reads, org_id, scope, path)
        if target is not None:
            taken = (
                await reads.execute(sa.select(files.c.id).where(where(org_id, scope, target)))
            ).first()
            if taken is not None:
                raise conflict(f"{target} already exists.", "exists")
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id(),
        "org_id": org_id,
        "scope": scope,
        "op": data.op,
        "path": path,
        "target": target,
        "status": "pending",
        "progress": 0.0,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }
    async with tether.engine.begin() as conn:
        await conn.execute(file_tasks.insert().values(row))
    tether.spawn(run_task(tether, row["id"]))
    return _task(RowView(row))


@get(
    scoped_paths("/files/tasks/{task_id:str}"),
    tags=["files"],
    summary="A task's state",
    opt=allow("file", "read"),
)
async def task_state(
    request: Request[Any, Any, Any], tether: Tether, task_id: FromPath[str]
) -> TaskOut:
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
        row = (
            await reads.execute(
                sa.select(file_tasks).where(
                    file_tasks.c.id == task_id,
                    file_tasks.c.org_id == org_id,
                    file_tasks.c.scope == scope,
                )
            )
        ).first()
    if row is None:
        raise not_found("task")
    return _task(row)


LEASE = 30.0
"""Seconds a task's lease lasts; its holder renews it every third of that while it works."""
SWEEP = 15.0
"""Seconds between two looks for tasks whose lease ran out."""


class _LeaseLost(Exception):
    """Another process took the task over (this one stalled past its lease)."""


async def _record(conn: AsyncConnection, tether: ServerState, task_id: str, **values: Any) -> bool:
    """Write `values` to the task while this process holds its lease; whether it did."""
    done = await conn.execute(
        file_tasks.update()
        .where(file_tasks.c.id == task_id, file_tasks.c.lease_owner == tether.hub.node)
        .values(updated_at=utcnow(), **values)
    )
    return done.rowcount == 1


async def _set_task(tether: ServerState, task_id: str, **values: Any) -> None:
    async with tether.engine.begin() as conn:
        await _record(conn, tether, task_id, **values)


async def _claim(tether: ServerState, task_id: str) -> bool:
    """Take the task's lease if it is unfinished and nobody holds a live one."""
    now = utcnow()
    async with tether.engine.begin() as conn:
        taken = await conn.execute(
            file_tasks.update()
            .where(
                file_tasks.c.id == task_id,
                file_tasks.c.status.in_(("pending", "running")),
                sa.or_(file_tasks.c.lease_until.is_(None), file_tasks.c.lease_until < now),
            )
            .values(
                status="running",
                lease_owner=tether.hub.node,
                lease_until=now + dt.timedelta(seconds=LEASE),
                updated_at=now,
            )
        )
    return taken.rowcount == 1


async def _renew(tether: ServerState, task_id: str) -> None:
    """Keep the lease of a task this process works on, until cancelled."""
    while True:
        await asyncio.sleep(LEASE / 3)
        lease_until = utcnow() + dt.timedelta(seconds=LEASE)
        await _set_task(tether, task_id, lease_until=lease_until)


async def run_task(tether: ServerState, task_id: str) -> None:
    """Carry out one task in one transaction, if this process wins its lease, and record how
    it ended."""
    if not await _claim(tether, task_id):
        return
    async with tether.reader.connect() as reads:
        task = (
            await reads.execute(sa.select(file_tasks).where(file_tasks.c.id == task_id))
        ).first()
    renewing = asyncio.create_task(_renew(tether, task_id))
    try:
        async with tether.engine.begin() as conn:
            await _carry_out(conn, task)
            done = {"status": "succeeded", "progress": 1.0, "lease_until": None}
            if not await _record(conn, tether, task_id, **done):
                raise _LeaseLost(task_id)
    except _LeaseLost:
        logger.warning("file task %s was taken over by another server", task_id)
    except Problem as exc:
        await _set_task(tether, task_id, status="failed", error=str(exc.detail), lease_until=None)
    except Exception as exc:
        logger.exception("file task %s failed", task_id)
        error = f"internal error: {exc}"
        await _set_task(tether, task_id, status="failed", error=error, lease_until=None)
    finally:
        renewing.cancel()


async def _carry_out(conn: AsyncConnection, task: Any) -> None:
    org_id, scope, path, target = task.org_id, task.scope, task.path, task.target
    rows = (await conn.execute(sa.select(files).where(under(org_id, scope, path)))).all()
    if not rows:
        raise not_found(path)
    if task.op == "remove":
        await conn.execute(files.delete().where(under(org_id, scope, path)))
        return
    taken = (await conn.execute(sa.select(files.c.id).where(where(org_id, scope, target)))).first()
    if taken is not None:
        raise conflict(f"{target} already exists.", "exists")
    await make_folders(conn, org_id, scope, ancestors(target))
    now = utcnow()

    def moved(old: str) -> str:
        return str(target) + old[len(path) :]

    if task.op == "move":
        await conn.execute(files.delete().where(under(org_id, scope, path)))
    await conn.execute(
        files.insert(),
        [
            {
                "id": row.id if task.op == "move" else new_id(),
                "org_id": org_id,
                "scope": scope,
                "path": moved(row.path),
                "parent": parent_of(moved(row.path)),
                "name": moved(row.path).rsplit("/", 1)[1],
                "is_dir": row.is_dir,
                "sha256": row.sha256,
                "size": row.size,
                "mime": row.mime,
                "created_at": row.created_at if task.op == "move" else now,
                "updated_at": now,
            }
            for row in rows
        ],
    )


async def resume_tasks(tether: ServerState) -> None:
    """Run what a stopped server left unfinished, once its lease has run out."""
    async with tether.reader.connect() as reads:
        left = (
            await reads.execute(
                sa.select(file_tasks.c.id).where(
                    file_tasks.c.status.in_(("pending", "running")),
                    sa.or_(file_tasks.c.lease_until.is_(None), file_tasks.c.lease_until < utcnow()),
                )
            )
        ).all()
    for row in left:
        await run_task(tether, row.id)


async def sweep_tasks(tether: ServerState) -> None:
    """Take over, now and every `SWEEP` seconds, tasks whose server stopped under them."""
    while True:
        try:
            await resume_tasks(tether)
        except Exception:
            logger.exception("looking for abandoned file tasks failed; trying again")
        await asyncio.sleep(SWEEP)


router = Router("/", route_handlers=[start_task, task_state])
