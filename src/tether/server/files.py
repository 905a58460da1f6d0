"""Files: a tree per organization (and per project), bytes in the blob store, rsync-style sync.

Uploads stream into the blob store and become visible in one transaction once complete;
downloads stream and honour HTTP Range. Move, copy and remove run as tasks the caller polls.
Sync follows librsync's three steps: the server hands out the signature of its copy and
patches a client's delta into a new version (upload-sync), or answers a client's signature with
a delta (download-sync).
"""

# Litestar reads handler annotations at runtime; keep them real objects (see resources.py).

import asyncio
import datetime as dt
import hashlib
import logging
import mimetypes
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import msgspec
import sqlalchemy as sa
from litestar import Request, Response, Router, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncConnection

from tether import delta as rsync
from tether._exceptions import DeltaError
from tether._paths import ancestors, clean_path, parent_of
from tether.server.data import ORG_SCOPE, scoped_paths, storage_scope
from tether.server.database import Reads, new_id, upsert, utcnow
from tether.server.pages import Page, check_query, fetch_page, page_limit
from tether.server.problems import Problem, conflict, invalid, not_found
from tether.server.resources import KINDS, load, resolve_scope
from tether.server.state import ServerState, Tether
from tether.server.tables import blobs, content_data, file_tasks, files

logger = logging.getLogger("tether.server")

CHUNK = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class FileInfo(msgspec.Struct, omit_defaults=True):
    path: str
    name: str
    is_dir: bool
    size: int
    created_at: dt.datetime
    updated_at: dt.datetime
    sha256: str | None = None
    mime: str | None = None
    project_id: str | None = None


class FolderIn(msgspec.Struct, forbid_unknown_fields=True):
    path: str


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


def _info(row: Any) -> FileInfo:
    return FileInfo(
        path=row.path,
        name=row.name,
        is_dir=row.is_dir,
        size=row.size,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sha256=row.sha256,
        mime=row.mime,
        project_id=None if row.scope == ORG_SCOPE else row.scope,
    )


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


def checked(raw: str | None, *, root_ok: bool = False) -> str:
    """A client's path in canonical form, or 422 `invalid_path`."""
    try:
        path = clean_path(raw or "")
    except ValueError as exc:
        raise invalid(str(exc), "invalid_path") from None
    if path == "/" and not root_ok:
        raise invalid("This needs a file or folder, not the root.", "invalid_path")
    return path


def _where(org_id: str, scope: str, path: str) -> sa.ColumnElement[bool]:
    return sa.and_(files.c.org_id == org_id, files.c.scope == scope, files.c.path == path)


def _under(org_id: str, scope: str, path: str) -> sa.ColumnElement[bool]:
    """`path` itself and everything below it."""
    prefix = path + "/"
    return sa.and_(
        files.c.org_id == org_id,
        files.c.scope == scope,
        sa.or_(files.c.path == path, sa.func.substr(files.c.path, 1, len(prefix)) == prefix),
    )


async def _find(conn: Reads, org_id: str, scope: str, path: str) -> Any:
    row = (await conn.execute(sa.select(files).where(_where(org_id, scope, path)))).first()
    if row is None:
        raise not_found("file or folder")
    return row


async def make_folders(conn: AsyncConnection, org_id: str, scope: str, paths: list[str]) -> None:
    """Create the folders `paths` (outermost first) where missing; 409 if one is a file."""
    if not paths:
        return
    now = utcnow()
    insert = upsert(conn, files)
    await conn.execute(
        insert.on_conflict_do_nothing(),
        [
            {
                "id": new_id(),
                "org_id": org_id,
                "scope": scope,
                "path": p,
                "parent": parent_of(p),
                "name": p.rsplit("/", 1)[1],
                "is_dir": True,
                "sha256": None,
                "size": 0,
                "mime": None,
                "created_at": now,
                "updated_at": now,
            }
            for p in paths
        ],
    )
    clash = await conn.execute(
        sa.select(files.c.path).where(
            files.c.org_id == org_id,
            files.c.scope == scope,
            files.c.path.in_(paths),
            files.c.is_dir.is_(False),
        )
    )
    found = clash.first()
    if found is not None:
        raise conflict(f"{found.path} is a file, not a folder.", "not_a_folder")


async def store_file(
    tether: ServerState,
    org_id: str,
    scope: str,
    path: str,
    sha256: str,
    size: int,
    mime: str | None,
) -> FileInfo:
    """Point `path` at a stored blob (a new file or a new version), folders above it made."""
    now = utcnow()
    async with tether.engine.begin() as conn:
        await make_folders(conn, org_id, scope, ancestors(path))
        await conn.execute(
            upsert(conn, blobs)
            .values(sha256=sha256, size=size, created_at=now)
            .on_conflict_do_nothing()
        )
        existing = (
            await conn.execute(sa.select(files.c.is_dir).where(_where(org_id, scope, path)))
        ).first()
        if existing is not None and existing.is_dir:
            raise conflict(f"{path} is a folder.", "is_a_folder")
        insert = upsert(conn, files).values(
            id=new_id(),
            org_id=org_id,
            scope=scope,
            path=path,
            parent=parent_of(path),
            name=path.rsplit("/", 1)[1],
            is_dir=False,
            sha256=sha256,
            size=size,
            mime=mime,
            created_at=now,
            updated_at=now,
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["org_id", "scope", "path"],
                set_={"sha256": sha256, "size": size, "mime": mime, "updated_at": now},
            )
        )
        row = await _find(conn, org_id, scope, path)
    return _info(row)


def _mime(path: str, request: Request[Any, Any, Any]) -> str | None:
    sent = request.headers.get("content-type")
    if sent and sent not in ("application/octet-stream", "application/x-www-form-urlencoded"):
        return sent.split(";")[0].strip()
    return mimetypes.guess_type(path)[0]


@put(
    scoped_paths("/files/data/{path:path}"),
    tags=["files"],
    summary="Upload a file (the body is its bytes); a new version if it exists",
    request_max_body_size=None,
)
async def upload(request: Request[Any, Any, Any], tether: Tether) -> FileInfo:
    path = checked(request.path_params["path"])
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
    sha256, size = await tether.blobs.receive(request.stream(), tether.settings.max_file_size)
    return await store_file(tether, org_id, scope, path, sha256, size, _mime(path, request))


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (start, end exclusive) of a single `Range: bytes=` request; 416 if unsatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    else:
        start, end = max(0, size - int(last)), size
    if start >= size or start >= end:
        raise Problem(
            416,
            f"The range is outside the file's {size} bytes.",
            code="range_not_satisfiable",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


async def _read(path: anyio.Path, start: int, end: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(start)
        left = end - start
        while left > 0:
            chunk = await f.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


@get(scoped_paths("/files/data/{path:path}"), tags=["files"], summary="Download a file")
async def download(request: Request[Any, Any, Any], tether: Tether) -> Response[Any]:
    path = checked(request.path_params["path"])
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
        row = await _find(reads, org_id, scope, path)
    if row.is_dir:
        raise conflict(f"{path} is a folder.", "is_a_folder")
    return blob_response(request, tether, row.sha256, row.size, row.mime, row.name)


def blob_response(
    request: Request[Any, Any, Any],
    tether: ServerState,
    sha256: str,
    size: int,
    mime: str | None,
    name: str,
) -> Response[Any]:
    """Stream a blob, or the byte range the request asks for (206), with its hash as ETag."""
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{sha256}"',
        "X-Tether-Sha256": sha256,
        "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(name)}",
    }
    window = _byte_range(request.headers.get("range"), size)
    start, end = window or (0, size)
    if window is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return Stream(
        _read(anyio.Path(tether.blobs.path(sha256)), start, end),
        status_code=206 if window else 200,
        media_type=mime or "application/octet-stream",
        headers=headers,
    )


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@get(
    scoped_paths("/files/info/{path:path}"), tags=["files"], summary="A file's or folder's details"
)
async def info(request: Request[Any, Any, Any], tether: Tether) -> FileInfo:
    path = checked(request.path_params["path"])
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
        return _info(await _find(reads, org_id, scope, path))


@get(
    [*scoped_paths("/files/list"), *scoped_paths("/files/list/{path:path}")],
    tags=["files"],
    summary="The contents of a folder, by name",
)
async def listing(request: Request[Any, Any, Any], tether: Tether) -> Page[FileInfo]:
    check_query(request, ())
    path = checked(request.path_params.get("path", "/"), root_ok=True)
    limit = page_limit(request, tether.settings.page_size, tether.settings.max_page_size)
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
        if path != "/" and not (await _find(reads, org_id, scope, path)).is_dir:
            raise conflict(f"{path} is a file, not a folder.", "not_a_folder")
        query = sa.select(files).where(
            files.c.org_id == org_id, files.c.scope == scope, files.c.parent == path
        )
        query = query.where(files.c.path != "/")
        total, rows, next_url = await fetch_page(reads, request, query, files.c.path, limit)
    return Page(total, [_info(r) for r in rows], next_url)


@post(scoped_paths("/files/folders"), tags=["files"], summary="Make a folder (and its parents)")
async def make_folder(
    request: Request[Any, Any, Any], tether: Tether, data: JSONBody[FolderIn]
) -> FileInfo:
    path = checked(data.path)
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
    async with tether.engine.begin() as conn:
        await make_folders(conn, org_id, scope, [*ancestors(path), path])
        return _info(await _find(conn, org_id, scope, path))


@post(
    scoped_paths("/files/tasks"),
    tags=["files"],
    summary="Move, copy or remove a file or folder tree, as a task",
    status_code=202,
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
        await _find(reads, org_id, scope, path)
        if target is not None:
            taken = (
                await reads.execute(sa.select(files.c.id).where(_where(org_id, scope, target)))
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
    return _task(_Row(row))


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


@get(scoped_paths("/files/tasks/{task_id:str}"), tags=["files"], summary="A task's state")
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
    rows = (await conn.execute(sa.select(files).where(_under(org_id, scope, path)))).all()
    if not rows:
        raise not_found(path)
    if task.op == "remove":
        await conn.execute(files.delete().where(_under(org_id, scope, path)))
        return
    taken = (await conn.execute(sa.select(files.c.id).where(_where(org_id, scope, target)))).first()
    if taken is not None:
        raise conflict(f"{target} already exists.", "exists")
    await make_folders(conn, org_id, scope, ancestors(target))
    now = utcnow()

    def moved(old: str) -> str:
        return str(target) + old[len(path) :]

    if task.op == "move":
        await conn.execute(files.delete().where(_under(org_id, scope, path)))
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


async def collect_blobs(tether: ServerState, idle: float = 3600.0) -> int:
    """Delete blobs that no file or content item points at; returns how many went."""
    referenced = sa.union(
        sa.select(files.c.sha256).where(files.c.sha256.is_not(None)),
        sa.select(content_data.c.sha256),
    ).subquery()
    async with tether.reader.connect() as reads:
        orphans = (
            await reads.execute(
                sa.select(blobs.c.sha256).where(blobs.c.sha256.not_in(sa.select(referenced)))
            )
        ).all()
    gone = [row.sha256 for row in orphans if tether.blobs.remove_if_idle(row.sha256, idle)]
    if gone:
        async with tether.engine.begin() as conn:
            await conn.execute(
                blobs.delete().where(
                    blobs.c.sha256.in_(gone), blobs.c.sha256.not_in(sa.select(referenced))
                )
            )
    return len(gone)


async def collect_blobs_hourly(tether: ServerState) -> None:
    while True:
        try:
            removed = await collect_blobs(tether)
            if removed:
                logger.info("removed %d blobs no file refers to", removed)
        except Exception:
            logger.exception("blob collection failed; trying again in an hour")
        await asyncio.sleep(3600)


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


# Sync -------------------------------------------------------------------------------------


_HASHES = ("blake2", "md4")
_ROLLSUMS = ("rabinkarp", "rollsum")


@get(
    scoped_paths("/files/signature/{path:path}"),
    tags=["files"],
    summary="The librsync signature of the server's copy (upload-sync, step 1)",
)
async def file_signature(request: Request[Any, Any, Any], tether: Tether) -> Response[bytes]:
    check_query(request, {"hash", "rollsum", "block_len"})
    params = request.query_params
    hash_, rollsum = params.get("hash", "blake2"), params.get("rollsum", "rabinkarp")
    if hash_ not in _HASHES or rollsum not in _ROLLSUMS:
        raise invalid("hash is blake2 or md4; rollsum is rabinkarp or rollsum.")
    try:
        block_len = int(params.get("block_len", 0))
    except ValueError:
        raise invalid("block_len must be a whole number.") from None
    if not 0 <= block_len <= 1 << 24:
        raise invalid("block_len must be between 0 (automatic) and 16 MiB.")
    row = await _file_row(request, tether)
    blob = tether.blobs.path(row.sha256)

    def sign() -> bytes:
        import io

        out = io.BytesIO()
        with blob.open("rb") as basis:
            rsync.signature(basis, out, hash=hash_, rollsum=rollsum, block_len=block_len)  # type: ignore[arg-type]
        return out.getvalue()

    body = await asyncio.to_thread(sign)
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"X-Tether-Sha256": row.sha256, "ETag": f'"{row.sha256}"'},
    )


async def _file_row(request: Request[Any, Any, Any], tether: ServerState) -> Any:
    path = checked(request.path_params["path"])
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
        row = await _find(reads, org_id, scope, path)
    if row.is_dir:
        raise conflict(f"{path} is a folder.", "is_a_folder")
    return row


async def _body_to_file(request: Request[Any, Any, Any], tether: ServerState) -> Any:
    target = tether.blobs.temporary()
    size = 0
    with target.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > tether.settings.max_file_size:
                target.unlink(missing_ok=True)
                raise Problem(413, "The body is too large.", code="too_large")
            out.write(chunk)
    return target


@put(
    scoped_paths("/files/patch/{path:path}"),
    tags=["files"],
    summary="Apply a librsync delta to the server's copy as a new version (upload-sync, step 3)",
    request_max_body_size=None,
)
async def file_patch(request: Request[Any, Any, Any], tether: Tether) -> FileInfo:
    check_query(request, {"basis"})
    row = await _file_row(request, tether)
    basis = request.query_params.get("basis")
    if basis is None:
        raise invalid("Give basis: the sha256 of the version the delta was made against.")
    if basis != row.sha256:
        raise conflict("The file changed since its signature was taken.", "basis_changed")
    delta_file = await _body_to_file(request, tether)
    result = tether.blobs.temporary()

    def apply() -> tuple[str, int]:
        with (
            tether.blobs.path(row.sha256).open("rb") as old,
            delta_file.open("rb") as d,
            result.open("wb") as out,
        ):
            rsync.patch(old, d, out)
        size = result.stat().st_size
        with result.open("rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        return tether.blobs.adopt(result, sha256), size

    try:
        sha256, size = await asyncio.to_thread(apply)
    except DeltaError as exc:
        raise invalid(f"The delta cannot be applied: {exc.message}", "bad_delta") from None
    finally:
        delta_file.unlink(missing_ok=True)
        result.unlink(missing_ok=True)
    return await store_file(tether, row.org_id, row.scope, row.path, sha256, size, row.mime)


@post(
    scoped_paths("/files/delta/{path:path}"),
    tags=["files"],
    summary="A delta from the signature in the body to the server's copy (download-sync)",
    status_code=200,
    request_max_body_size=None,
)
async def file_delta(request: Request[Any, Any, Any], tether: Tether) -> Response[Any]:
    row = await _file_row(request, tether)
    signature_file = await _body_to_file(request, tether)
    result = tether.blobs.temporary()

    def make() -> None:
        with (
            signature_file.open("rb") as sig,
            tether.blobs.path(row.sha256).open("rb") as new,
            result.open("wb") as out,
        ):
            rsync.delta(sig, new, out)

    try:
        await asyncio.to_thread(make)
    except DeltaError as exc:
        result.unlink(missing_ok=True)
        raise invalid(f"The signature cannot be used: {exc.message}", "bad_signature") from None
    finally:
        signature_file.unlink(missing_ok=True)
    size = result.stat().st_size

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in _read(anyio.Path(result), 0, size):
                yield chunk
        finally:
            result.unlink(missing_ok=True)

    return Stream(
        stream(),
        media_type="application/octet-stream",
        headers={"X-Tether-Sha256": row.sha256, "Content-Length": str(size)},
    )


# Content items -----------------------------------------------------------------------------

_VARIANT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


async def _content(request: Request[Any, Any, Any], tether: ServerState) -> tuple[str, str]:
    """The content item of the path in the caller's scope, and the variant asked for."""
    check_query(request, {"variant"})
    variant = request.query_params.get("variant", "")
    if variant and not _VARIANT.match(variant):
        raise invalid("A variant is 1 to 100 letters, digits or _.-", "invalid_variant")
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request, KINDS["content"])
        row = await load(reads, KINDS["content"], org_id, project_id, request.path_params["id"])
    return row.id, variant


@put(
    scoped_paths("/content/{id:str}/data"),
    tags=["content"],
    summary="Upload a content item's bytes (or a variant's, with ?variant=)",
    request_max_body_size=None,
)
async def upload_content(request: Request[Any, Any, Any], tether: Tether) -> dict[str, Any]:
    content_id, variant = await _content(request, tether)
    sha256, size = await tether.blobs.receive(request.stream(), tether.settings.max_file_size)
    mime = _mime("", request)
    now = utcnow()
    async with tether.engine.begin() as conn:
        await conn.execute(
            upsert(conn, blobs)
            .values(sha256=sha256, size=size, created_at=now)
            .on_conflict_do_nothing()
        )
        insert = upsert(conn, content_data).values(
            content_id=content_id,
            variant=variant,
            sha256=sha256,
            size=size,
            mime=mime,
            updated_at=now,
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["content_id", "variant"],
                set_={"sha256": sha256, "size": size, "mime": mime, "updated_at": now},
            )
        )
    return {"variant": variant or None, "sha256": sha256, "size": size, "mime": mime}


@get(
    scoped_paths("/content/{id:str}/data"),
    tags=["content"],
    summary="A content item's bytes (or a variant's, with ?variant=); Range supported",
)
async def download_content(request: Request[Any, Any, Any], tether: Tether) -> Response[Any]:
    content_id, variant = await _content(request, tether)
    async with tether.reader.connect() as reads:
        row = (
            await reads.execute(
                sa.select(content_data).where(
                    content_data.c.content_id == content_id, content_data.c.variant == variant
                )
            )
        ).first()
    if row is None:
        raise not_found("content data" + (f" for variant {variant}" if variant else ""))
    name = f"{content_id}{'.' + variant if variant else ''}"
    return blob_response(request, tether, row.sha256, row.size, row.mime, name)


router = Router(
    "/",
    route_handlers=[
        upload,
        download,
        info,
        listing,
        make_folder,
        start_task,
        task_state,
        file_signature,
        file_patch,
        file_delta,
        upload_content,
        download_content,
    ],
)
