"""Move, copy and remove of files and folder trees, as tasks the caller polls.

A task is recorded before it runs and carried out in one transaction, so a task found
`running` at start-up (the server stopped under it) left nothing behind and is run again.
"""

# Litestar reads handler annotations at runtime; keep them real objects (see resources.py).

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


async def _set_task(tether: ServerState, task_id: str, **values: Any) -> None:
    async with tether.engine.begin() as conn:
        await conn.execute(
            file_tasks.update()
            .where(file_tasks.c.id == task_id)
            .values(updated_at=utcnow(), **values)
        )


async def run_task(tether: ServerState, task_id: str) -> None:
    """Carry out one task in one transaction and record how it ended."""
    async with tether.reader.connect() as reads:
        task = (
            await reads.execute(sa.select(file_tasks).where(file_tasks.c.id == task_id))
        ).first()
    if task is None or task.status in ("succeeded", "failed"):
        return
    await _set_task(tether, task_id, status="running")
    try:
        async with tether.engine.begin() as conn:
            await _carry_out(conn, task)
    except Problem as exc:
        await _set_task(tether, task_id, status="failed", error=str(exc.detail))
    except Exception as exc:
        logger.exception("file task %s failed", task_id)
        await _set_task(tether, task_id, status="failed", error=f"internal error: {exc}")
    else:
        await _set_task(tether, task_id, status="succeeded", progress=1.0)


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
    """Run again what a stopped server left pending or running."""
    async with tether.reader.connect() as reads:
        left = (
            await reads.execute(
                sa.select(file_tasks.c.id).where(file_tasks.c.status.in_(("pending", "running")))
            )
        ).all()
    for row in left:
        await run_task(tether, row.id)


router = Router("/", route_handlers=[start_task, task_state])
