"""Content-addressed blob storage: every distinct content once, by SHA-256, on local disk
(`BlobStore`, the embedded default) or in an S3-compatible object store (`objects.ObjectBlobs`,
for a cluster); both behind the same methods, so nothing else knows where bytes live.

Files and packages point at blobs by hash. A blob is written to a temporary file while its hash
is computed and moved into place only when complete, so an upload cut off midway leaves nothing
anyone can see, and two uploads of the same bytes keep one copy. Blobs no file or content item
refers to any more are collected (`collect_blobs`), sparing those stored or reused in the last
hour, so an upload that just found its bytes already stored never loses them. Downloads are
served here too (`blob_response`: whole, or the byte range asked for).

Each server process writes its temporary files in a folder of its own under `incoming/`, which
it holds locked while it lives. A process killed mid-upload leaves its folder unlocked, and the
next start or collection of any process sharing the store removes it (`reclaim`), while the
folders of live processes, and the uploads in flight there, are left alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import sqlalchemy as sa
from litestar import Request, Response
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tether.server.db.engine import upsert
from tether.server.db.reads import Reader
from tether.server.db.tables import blobs, content_data, files, package_versions
from tether.server.problems import Problem
from tether.server.settings import Settings

_LOCK = ".lock"
_LEGACY_AGE = 3600.0
"""Age past which a temporary file left directly in `incoming/` (by a version that had no
folder per process) is removed."""


READ_CHUNK = 1024 * 1024


async def read_file(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    """The bytes of a local file from `start` to `end` (exclusive), a chunk at a time."""
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(start)
        left = end - start
        while left > 0:
            chunk = await f.read(min(READ_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


class BlobStore:
    """Blobs on local disk under `root`; temporary files under `root/incoming` (for every
    back end: an upload is hashed on its way in, before its name is known)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._incoming_root = root / "incoming"
        self._incoming = self._incoming_root / uuid.uuid4().hex
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._lock = (self._incoming / _LOCK).open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    async def ready(self) -> None:
        """Check that the store can be used, at start (the data folder always can)."""

    def close(self) -> None:
        """Remove this process's temporary folder and let go of its lock."""
        shutil.rmtree(self._incoming, ignore_errors=True)
        self._lock.close()

    def reclaim(self) -> int:
        """Remove the temporary files of processes that died (their folder is unlocked), and
        stray ones older than an hour; returns how many files went."""
        removed = 0
        for entry in self._incoming_root.iterdir():
            if entry == self._incoming:
                continue
            if entry.is_file():
                if time.time() - entry.stat().st_mtime > _LEGACY_AGE:
                    entry.unlink(missing_ok=True)
                    removed += 1
                continue
            try:
                with (entry / _LOCK).open("a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    removed += sum(1 for f in entry.iterdir() if f.name != _LOCK)
                    shutil.rmtree(entry, ignore_errors=True)
            except BlockingIOError:
                continue
            except FileNotFoundError:
                shutil.rmtree(entry, ignore_errors=True)
        return removed

    async def stored(self, idle: float) -> list[str]:
        """The hashes of the blobs kept that were not written or reused in the last `idle`
        seconds."""
        return await asyncio.to_thread(self._stored, idle)

    def _stored(self, idle: float) -> list[str]:
        horizon = time.time() - idle
        found = []
        for first in self.root.iterdir():
            if len(first.name) != 2 or not first.is_dir():
                continue
            for path in first.glob("*/*"):
                try:
                    if path.stat().st_mtime < horizon:
                        found.append(path.name)
                except FileNotFoundError:
                    continue
        return found

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def exists(self, sha256: str) -> bool:
        return await anyio.Path(self.path(sha256)).is_file()

    def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        """The bytes of a blob from `start` to `end` (exclusive), a chunk at a time."""
        return read_file(self.path(sha256), start, end)

    @asynccontextmanager
    async def local_copy(self, sha256: str) -> AsyncIterator[Path]:
        """A local file holding the blob, for code that needs one (librsync), for as long as
        the context lasts."""
        yield self.path(sha256)

    async def receive(self, chunks: AsyncIterator[bytes], limit: int) -> tuple[str, int]:
        """Store the bytes of `chunks` (413 past `limit`); returns their SHA-256 and size."""
        digest = hashlib.sha256()
        temporary, size = await self.spool(chunks, limit, digest)
        try:
            return await self.adopt(temporary, digest.hexdigest()), size
        finally:
            temporary.unlink(missing_ok=True)

    async def spool(
        self, chunks: AsyncIterator[bytes], limit: int, digest: Any = None
    ) -> tuple[Path, int]:
        """Write `chunks` to a new temporary file (413 past `limit`, and then no file is
        left), feeding `digest` on the way; the caller removes or adopts the file."""
        size = 0
        temporary = self.temporary()
        try:
            with temporary.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise Problem(
                            413, f"A file may be at most {limit} bytes.", code="too_large"
                        )
                    if digest is not None:
                        digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary, size

    async def adopt(self, temporary: Path, sha256: str) -> str:
        """Move a finished temporary file into place as the blob `sha256` (or drop it when the
        store already has those bytes, marking them as reused)."""
        target = self.path(sha256)
        if target.exists():
            os.utime(target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, target)
        return sha256

    async def remove_if_idle(self, sha256: str, idle: float) -> bool:
        """Delete a blob nobody refers to any more, unless it was stored or reused in the last
        `idle` seconds (an upload may be about to point at it)."""
        target = self.path(sha256)
        try:
            if time.time() - target.stat().st_mtime < idle:
                return False
            target.unlink()
        except FileNotFoundError:
            pass
        return True

    def temporary(self) -> Path:
        """A fresh path in the incoming folder, for bytes made on the server (patches)."""
        return self._incoming / uuid.uuid4().hex


def open_blobs(settings: Settings) -> BlobStore:
    """The blob store the settings name: the data folder's `blobs/`, or the object store of
    `TETHER_BLOBS_URL` (with temporary files still in the data folder)."""
    root = Path(settings.data).resolve() / "blobs"
    if not settings.blobs_url:
        return BlobStore(root)
    from tether.server.files.objects import ObjectBlobs, s3_store

    return ObjectBlobs(root, s3_store(settings))


async def record_blob(conn: AsyncConnection, sha256: str, size: int, now: dt.datetime) -> None:
    """Note a blob in the table `collect_blobs` works from (once per content)."""
    await conn.execute(
        upsert(conn, blobs)
        .values(sha256=sha256, size=size, created_at=now)
        .on_conflict_do_nothing()
    )


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


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


def blob_response(
    request: Request[Any, Any, Any],
    store: BlobStore,
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
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
    }
    window = _byte_range(request.headers.get("range"), size)
    start, end = window or (0, size)
    if window is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return Stream(
        store.read(sha256, start, end),
        status_code=206 if window else 200,
        media_type=mime or "application/octet-stream",
        headers=headers,
    )


async def collect_blobs(
    engine: AsyncEngine, reader: Reader, store: BlobStore, grace: float, idle: float = 3600.0
) -> int:
    """Delete blobs no file, content item or package version points at, and blob files no row
    records (a server killed between storing the bytes and committing); returns how many. The
    temporary files of dead processes go too (unrecorded ones once `grace` seconds old)."""
    referenced = sa.union(
        sa.select(files.c.sha256).where(files.c.sha256.is_not(None)),
        sa.select(content_data.c.sha256),
        sa.select(package_versions.c.sha256),
    ).subquery()
    async with reader.connect() as reads:
        orphans = (
            await reads.execute(
                sa.select(blobs.c.sha256).where(blobs.c.sha256.not_in(sa.select(referenced)))
            )
        ).all()
    gone = [row.sha256 for row in orphans if await store.remove_if_idle(row.sha256, idle)]
    if gone:
        async with engine.begin() as conn:
            await conn.execute(
                blobs.delete().where(
                    blobs.c.sha256.in_(gone), blobs.c.sha256.not_in(sa.select(referenced))
                )
            )
    on_disk = await store.stored(grace)
    unrecorded: list[str] = []
    async with reader.connect() as reads:
        for start in range(0, len(on_disk), 500):
            batch = on_disk[start : start + 500]
            known = await reads.execute(sa.select(blobs.c.sha256).where(blobs.c.sha256.in_(batch)))
            recorded = set(known.scalars())
            unrecorded += [sha for sha in batch if sha not in recorded]
    gone += [sha for sha in unrecorded if await store.remove_if_idle(sha, grace)]
    await asyncio.to_thread(store.reclaim)
    return len(gone)
