"""Files: a tree per organization (and per project), its bytes in the blob store.

Uploads stream into the blob store and become visible in one transaction once complete;
downloads stream and honour HTTP Range. Moving, copying and removing trees are tasks
(`file_tasks.py`); rsync-style sync is in `file_sync.py`.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from typing import Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Response, Router, get, post, put
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from tether._paths import ancestors, clean_path, parent_of
from tether.server.db.cascades import Gone, on_delete
from tether.server.db.engine import new_id, upsert, utcnow
from tether.server.db.pages import Page, list_page, page_limit
from tether.server.db.reads import Reads
from tether.server.db.tables import file_tasks, files
from tether.server.files.blobs import blob_response, record_blob
from tether.server.identity.policy import allow
from tether.server.identity.scope import ORG_SCOPE, scoped_paths, storage_scope
from tether.server.problems import conflict, invalid, not_found
from tether.server.state import ServerState, Tether

CHUNK = 1024 * 1024


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


def checked(raw: str | None, *, root_ok: bool = False) -> str:
    """A client's path in canonical form, or 422 `invalid_path`."""
    try:
        path = clean_path(raw or "")
    except ValueError as exc:
        raise invalid(str(exc), "invalid_path") from None
    if path == "/" and not root_ok:
        raise invalid("This needs a file or folder, not the root.", "invalid_path")
    return path


def where(org_id: str, scope: str, path: str) -> sa.ColumnElement[bool]:
    return sa.and_(files.c.org_id == org_id, files.c.scope == scope, files.c.path == path)


def under(org_id: str, scope: str, path: str) -> sa.ColumnElement[bool]:
    """`path` itself and everything below it."""
    prefix = path + "/"
    return sa.and_(
        files.c.org_id == org_id,
        files.c.scope == scope,
        sa.or_(files.c.path == path, sa.func.substr(files.c.path, 1, len(prefix)) == prefix),
    )


async def find_entry(conn: Reads, org_id: str, scope: str, path: str) -> Any:
    row = (await conn.execute(sa.select(files).where(where(org_id, scope, path)))).first()
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
        await record_blob(conn, sha256, size, now)
        existing = (
            await conn.execute(sa.select(files.c.is_dir).where(where(org_id, scope, path)))
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
        row = await find_entry(conn, org_id, scope, path)
    return _info(row)


def mime_of(path: str, request: Request[Any, Any, Any]) -> str | None:
    sent = request.headers.get("content-type")
    if sent and sent not in ("application/octet-stream", "application/x-www-form-urlencoded"):
        return sent.split(";")[0].strip()
    return mimetypes.guess_type(path)[0]


@put(
    scoped_paths("/files/data/{path:path}"),
    tags=["files"],
    summary="Upload a file (the body is its bytes); a new version if it exists",
    request_max_body_size=None,
    opt=allow("file", "write", target="path", raw_body="application/octet-stream"),
)
async def upload(request: Request[Any, Any, Any], tether: Tether) -> FileInfo:
    path = checked(request.path_params["path"])
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
    sha256, size = await tether.blobs.receive(request.stream(), tether.settings.max_file_size)
    return await store_file(tether, org_id, scope, path, sha256, size, mime_of(path, request))


async def file_row(request: Request[Any, Any, Any], tether: ServerState) -> Any:
    """The file the path names, in the caller's tree (404 if absent, 409 for a folder)."""
    path = checked(request.path_params["path"])
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
        row = await find_entry(reads, org_id, scope, path)
    if row.is_dir:
        raise conflict(f"{path} is a folder.", "is_a_folder")
    return row


@get(
    scoped_paths("/files/data/{path:path}"),
    tags=["files"],
    summary="Download a file",
    opt=allow("file", "read", raw_response="ranged"),
)
async def download(request: Request[Any, Any, Any], tether: Tether) -> Response[Any]:
    row = await file_row(request, tether)
    return blob_response(request, tether.blobs, row.sha256, row.size, row.mime, row.name)


@get(
    [*scoped_paths("/files/info"), *scoped_paths("/files/info/{path:path}")],
    tags=["files"],
    summary="A file's or folder's details (the root folder's too)",
    opt=allow("file", "read"),
)
async def info(request: Request[Any, Any, Any], tether: Tether) -> FileInfo:
    path = checked(request.path_params.get("path", "/"), root_ok=True)
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
        if path == "/":
            return await _root(reads, org_id, scope)
        return _info(await find_entry(reads, org_id, scope, path))


async def _root(reads: Reads, org_id: str, scope: str) -> FileInfo:
    """The root folder, which always exists: its times are those of what it holds."""
    found: Any = (
        await reads.execute(
            sa.select(sa.func.min(files.c.created_at), sa.func.max(files.c.updated_at)).where(
                files.c.org_id == org_id, files.c.scope == scope
            )
        )
    ).one()
    first = _utc(found[0]) or utcnow()
    last = found[1]
    return FileInfo(
        "/",
        "",
        True,
        0,
        first,
        _utc(last) or first,
        project_id=None if scope == ORG_SCOPE else scope,
    )


def _utc(moment: Any) -> dt.datetime | None:
    """An aggregate's timestamp (SQLite gives text, PostgreSQL a datetime), timezone-aware."""
    if moment is None:
        return None
    parsed: dt.datetime = dt.datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


_LISTING = sa.select(files).where(
    files.c.org_id == sa.bindparam("org_id"),
    files.c.scope == sa.bindparam("scope"),
    files.c.parent == sa.bindparam("parent"),
    files.c.path != "/",
)


@get(
    [*scoped_paths("/files/list"), *scoped_paths("/files/list/{path:path}")],
    tags=["files"],
    summary="The contents of a folder, by name",
    opt=allow("file", "read", query=("limit", "after")),
)
async def listing(request: Request[Any, Any, Any], tether: Tether) -> Page[FileInfo]:
    limit = page_limit(request, tether.settings)
    path = checked(request.path_params.get("path", "/"), root_ok=True)
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
        if path != "/" and not (await find_entry(reads, org_id, scope, path)).is_dir:
            raise conflict(f"{path} is a file, not a folder.", "not_a_folder")
        params = {"org_id": org_id, "scope": scope, "parent": path}
        return await list_page(reads, request, _LISTING, files.c.path, limit, _info, params)


@post(
    scoped_paths("/files/folders"),
    tags=["files"],
    summary="Make a folder (and its parents)",
    opt=allow("file", "write"),
)
async def make_folder(
    request: Request[Any, Any, Any], tether: Tether, data: JSONBody[FolderIn]
) -> FileInfo:
    path = checked(data.path)
    async with tether.reader.connect() as reads:
        org_id, scope = await storage_scope(reads, request)
    async with tether.engine.begin() as conn:
        await make_folders(conn, org_id, scope, [*ancestors(path), path])
        return _info(await find_entry(conn, org_id, scope, path))


router = Router("/", route_handlers=[upload, download, info, listing, make_folder])


@on_delete("project")
async def _forget_tree(gone: Gone) -> None:
    """A deleted project's file tree and its file tasks (blobs nothing refers to any more are
    collected later)."""
    for table in (files, file_tasks):
        await gone.conn.execute(table.delete().where(table.c.scope.in_(gone.ids)))
