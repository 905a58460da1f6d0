"""`AsyncFiles`: the file tree of the client's organization (or project, for a project token).

This file is the source of both twins: `scripts/unasync.py` writes `_sync_files.py` (`Files`)
from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from tether._exceptions import (
    APIError,
    ChecksumError,
    ConfigurationError,
    DownloadError,
    NetworkError,
    NotFoundError,
    ServerError,
    TaskError,
    TaskTimeoutError,
)
from tether._paths import clean_path
from tether.client._files import (
    CHUNK,
    Source,
    file_sha256,
    local_file_error,
    opened_source,
    patched,
    signature_of,
    source_name,
    write_delta,
)
from tether.client._flows import pause as pause_flow
from tether.client._workers import _async_offload

if TYPE_CHECKING:
    from tether.client._async_client import AsyncClient

Progress = Callable[[int, int | None], None]
"""Called as bytes move: (done so far, total or None)."""


def _remote(path: str) -> str:
    try:
        return quote(clean_path(path))
    except ValueError as exc:
        raise ValueError(f"{path!r}: {exc}") from None


async def _async_chunks(
    stream: BinaryIO, progress: Progress | None, total: int | None
) -> AsyncIterator[bytes]:
    done = 0
    while chunk := stream.read(CHUNK):
        done += len(chunk)
        if progress:
            progress(done, total)
        yield chunk


WINDOW = CHUNK * 8
"""Bytes asked for in one Range request of a download: what a streamed download holds."""


async def ranged(
    client: AsyncClient, url: str, start: int = 0, size: int | None = None, window: int = WINDOW
) -> AsyncIterator[bytes]:
    """The bytes of `url` from `start`, one Range request of `window` bytes at a time, so a
    download of any size holds one window in memory. With `size` unknown it stops at the first
    short window (or at the end the server reports, 416)."""
    have = start
    while size is None or have < size:
        want = window if size is None else min(window, size - have)
        try:
            chunk = await client.request(
                "GET",
                url,
                headers={"Range": f"bytes={have}-{have + want - 1}"},
                raw=True,
            )
        except APIError as exc:
            if size is None and exc.code == "range_not_satisfiable":
                return
            raise
        if not chunk:
            return
        have += len(chunk)
        yield chunk
        if len(chunk) < want:
            return


async def verified(chunks: AsyncIterator[bytes], sha256: str, what: str) -> AsyncIterator[bytes]:
    """`chunks` passed through; `ChecksumError` after the last one if they do not hash to
    `sha256` (the file changed while it was read, or the bytes were damaged)."""
    digest = hashlib.sha256()
    async for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha256:
        raise ChecksumError(f"{what}: the bytes read do not match the SHA-256 {sha256}")


async def fetch_verified(
    client: AsyncClient,
    url: str,
    target: Path,
    size: int,
    sha256: str,
    progress: Progress | None = None,
) -> Path:
    """Download `url` to `target` in Range requests through a partial file beside it, which
    survives a failed transfer (`DownloadError`) so the next call, in this process or a later
    one, resumes where it stopped. `target` appears, atomically, only once size and SHA-256
    match; on a mismatch the bytes are deleted and `ChecksumError` raised."""
    partial = target.with_name(f".{target.name}.{sha256[:16]}.part")
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        have = 0
        partial.unlink()
    try:
        out = partial.open("ab")
    except OSError as exc:
        raise local_file_error(exc, partial) from exc
    with out:
        try:
            async for chunk in ranged(client, url, have, size):
                out.write(chunk)
                out.flush()
                have += len(chunk)
                if progress:
                    progress(have, size)
        except (NetworkError, ServerError) as exc:
            raise DownloadError(
                f"{target.name}: the transfer failed after {have} of {size} bytes ({exc}); "
                "call again to resume",
                partial,
            ) from exc
    digest = await _async_offload(file_sha256, partial)
    if have != size or digest != sha256:
        partial.unlink()
        raise ChecksumError(
            f"{target.name}: the downloaded bytes do not match the SHA-256 {sha256}"
        )
    os.replace(partial, target)
    return target


class AsyncFileTask:
    """A move, copy or remove running on the server."""

    def __init__(self, files: AsyncFiles, data: dict[str, Any]) -> None:
        self._files = files
        self.data = data

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        """pending, running, succeeded or failed."""
        return str(self.data["status"])

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    async def refresh(self) -> AsyncFileTask:
        self.data = await self._files._client.get(f"files/tasks/{self.id}")
        return self

    async def wait(self, timeout: float | None = 60.0) -> AsyncFileTask:
        """Poll until the task ends; raise `TaskError` if it failed, `TaskTimeoutError` if it runs
        past `timeout` seconds."""
        waited, delay = 0.0, 0.05
        while not self.done:
            if timeout is not None and waited >= timeout:
                raise TaskTimeoutError(f"task {self.id} still {self.status} after {timeout} s")
            await self._files._client._run(pause_flow(delay))
            waited += delay
            delay = min(1.0, delay * 2)
            await self.refresh()
        if self.status == "failed":
            raise TaskError(
                f"{self.data['op']} {self.data['path']} failed: {self.data.get('error')}"
            )
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.data['op']} {self.data['path']} {self.status}>"


class AsyncFiles:
    """Upload, download, list and sync files; move, copy and remove run as tasks."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def put(
        self, source: Source, remote: str, *, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Upload `source` (a path, a binary file object, or a (filename, file object) pair) to
        `remote`, streamed; an existing file gets a new version. A `remote` ending in `/` is a
        folder: the file keeps its name there. Returns the file's info."""
        if remote.endswith("/"):
            name = source_name(source)
            if not name:
                raise ConfigurationError(
                    f"{remote!r} is a folder and this upload has no file name: give the remote "
                    "file's path, or a (filename, file object) pair"
                )
            remote += name
        with opened_source(source) as (stream, size):
            return await self._client.request(  # type: ignore[no-any-return]
                "PUT",
                f"files/data{_remote(remote)}",
                content=_async_chunks(stream, progress, size),
                headers={"Content-Length": str(size)} if size is not None else None,
            )

    async def get(
        self, remote: str, local: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> Path:
        """Download `remote` to `local` in ranges, resuming a partial download left by an
        earlier call; the file appears (atomically) only once its SHA-256 checks out."""
        info = await self.info(remote)
        if info["is_dir"]:
            raise IsADirectoryError(remote)
        return await fetch_verified(
            self._client,
            f"files/data{_remote(remote)}",
            Path(local),
            int(info["size"]),
            info["sha256"],
            progress,
        )

    async def iter_bytes(self, remote: str) -> AsyncIterator[bytes]:
        """A file's bytes as they come, a window at a time (`async for chunk in ...`), for
        files too large to hold in memory; raises `ChecksumError` after the last chunk if the
        bytes do not match the file's SHA-256 (it changed while being read)."""
        info = await self.info(remote)
        if info["is_dir"]:
            raise IsADirectoryError(remote)
        chunks = ranged(self._client, f"files/data{_remote(remote)}", 0, int(info["size"]))
        async for chunk in verified(chunks, info["sha256"], remote):
            yield chunk

    async def read(self, remote: str) -> bytes:
        """A (small) file's bytes, whole in memory (`iter_bytes` streams)."""
        return await self._client.request("GET", f"files/data{_remote(remote)}", raw=True)  # type: ignore[no-any-return]

    async def info(self, remote: str) -> dict[str, Any]:
        """Size, SHA-256, type and times of a file or folder."""
        return await self._client.get(f"files/info{_remote(remote)}")  # type: ignore[no-any-return]

    async def ls(self, remote: str = "/") -> list[dict[str, Any]]:
        """The contents of a folder (every page), by name."""
        path = _remote(remote)
        return await self._client.get_all(
            "files/list" + ("" if path == "/" else path), {"limit": 500}
        )

    async def mkdir(self, remote: str) -> dict[str, Any]:
        """Make a folder and any missing parents."""
        return await self._client.post("files/folders", {"path": clean_path(remote)})  # type: ignore[no-any-return]

    async def _task(self, op: str, path: str, target: str | None = None) -> AsyncFileTask:
        body: dict[str, Any] = {"op": op, "path": clean_path(path)}
        if target is not None:
            body["target"] = clean_path(target)
        return AsyncFileTask(self, await self._client.post("files/tasks", body))

    async def mv(self, path: str, target: str) -> AsyncFileTask:
        """Move a file or folder tree; returns the task (`await task.wait()`)."""
        return await self._task("move", path, target)

    async def cp(self, path: str, target: str) -> AsyncFileTask:
        """Copy a file or folder tree (no bytes are duplicated on the server)."""
        return await self._task("copy", path, target)

    async def rm(self, path: str) -> AsyncFileTask:
        """Remove a file or folder tree."""
        return await self._task("remove", path)

    async def sync_up(
        self, local: str | os.PathLike[str], remote: str, *, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Make `remote` equal `local` by sending only a delta against the server's copy (the
        server signs its copy, we send the delta, it patches a new version). Falls back to a
        plain upload when the server has no copy. The info returned carries `sent`: the bytes
        that went up."""
        path = Path(local)
        try:
            signature = await self._client.request(
                "GET", f"files/signature{_remote(remote)}", raw=True
            )
            basis = (await self.info(remote))["sha256"]
        except NotFoundError:
            result = await self.put(path, remote, progress=progress)
            return result | {"sent": path.stat().st_size}
        with tempfile.TemporaryFile() as delta_file:
            size = await _async_offload(write_delta, signature, path, delta_file)
            delta_file.seek(0)
            result = await self._client.request(
                "PUT",
                f"files/patch{_remote(remote)}",
                params={"basis": basis},
                content=_async_chunks(delta_file, progress, size),
                headers={"Content-Length": str(size)},
            )
        return result | {"sent": size}  # type: ignore[no-any-return]

    async def sync_down(
        self, remote: str, local: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> Path:
        """Make `local` equal `remote` by fetching only a delta against the local copy; a plain
        download when there is no local copy. The result replaces `local` atomically."""
        target = Path(local)
        if not target.exists():
            return await self.get(remote, target, progress=progress)
        info = await self.info(remote)
        signature = await _async_offload(signature_of, target)
        delta = await self._client.request(
            "POST", f"files/delta{_remote(remote)}", content=signature, raw=True
        )
        if progress:
            progress(len(delta), len(delta))
        result = target.with_name(f".{target.name}.sync")
        try:
            sha256 = await _async_offload(patched, target, delta, result)
            if sha256 != info["sha256"]:
                raise ChecksumError(f"{remote}: the patched file does not match the server's")
            os.replace(result, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                result.unlink()
        return target
