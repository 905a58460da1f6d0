"""Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, Garage...), so every node
of a cluster serves every file, content item and package whatever node stored it.

The client is obstore (the Python face of the Rust `object_store` crate that DataFusion and
delta-rs use): async throughout, uploads in parallel multipart parts, downloads streamed by
range, all without blocking the event loop. Keys stay content-addressed
(`PREFIX/ab/cd/<sha256>`), so deduplication, verification and resumable downloads work as on
disk. An upload is still hashed into a local temporary file first (its key is its hash).

Reuse is marked by a small object `PREFIX/reused/<sha256>` (an object's time cannot be touched
in place), so the collector spares bytes an upload has just found already stored.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import obstore
from obstore.store import S3Store

from tether.server.files.blobs import READ_CHUNK, BlobStore
from tether.server.settings import Settings, SettingsError

PART = 8 * 1024 * 1024
"""Size of one part of a multipart upload."""
_REUSED = "reused"


def s3_store(settings: Settings) -> S3Store:
    """The store `TETHER_BLOBS_URL` (`s3://BUCKET/PREFIX`) names, with the S3 settings."""
    url = urlsplit(settings.blobs_url)
    if url.scheme != "s3" or not url.netloc:
        raise SettingsError(
            f"TETHER_BLOBS_URL: {settings.blobs_url!r} is not s3://BUCKET[/PREFIX] "
            "(leave it unset for the data folder)"
        )
    options: dict[str, str] = {"region": settings.s3_region}
    if settings.s3_endpoint:
        options["endpoint"] = settings.s3_endpoint
    if settings.s3_access_key_id:
        options["access_key_id"] = settings.s3_access_key_id
        options["secret_access_key"] = settings.s3_secret_access_key or ""
    http = bool(settings.s3_endpoint) and settings.s3_endpoint.startswith("http://")
    return S3Store(
        url.netloc,
        prefix=url.path.strip("/") or None,
        client_options={"allow_http": http},
        **options,  # type: ignore[arg-type]
    )


async def usable(store: S3Store) -> None:
    """One listing of the store, so a wrong bucket, endpoint or key stops the server at start
    with the store's answer, instead of failing every upload."""
    try:
        await obstore.list_with_delimiter_async(store, _REUSED)
    except Exception as exc:
        reason = str(exc).split("\n", 1)[0]
        raise SettingsError(f"TETHER_BLOBS_URL: the object store refused: {reason}") from exc


class ObjectBlobs(BlobStore):
    """Blobs kept in `store`; temporary files under `root/incoming` on local disk."""

    def __init__(self, root: Path, store: S3Store) -> None:
        super().__init__(root)
        self.store = store

    async def ready(self) -> None:
        await usable(self.store)

    @staticmethod
    def key(sha256: str) -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"

    async def exists(self, sha256: str) -> bool:
        return await self._modified(self.key(sha256)) is not None

    async def adopt(self, temporary: Path, sha256: str) -> str:
        """Upload a finished temporary file as the blob `sha256` (multipart when large), or
        mark the bytes as reused when the store has them already."""
        if await self.exists(sha256):
            await obstore.put_async(self.store, f"{_REUSED}/{sha256}", b"")
        else:
            await obstore.put_async(
                self.store, self.key(sha256), temporary, chunk_size=PART, max_concurrency=4
            )
        return sha256

    async def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        found = await obstore.get_async(
            self.store, self.key(sha256), options={"range": (start, end)}
        )
        async for chunk in found.stream(min_chunk_size=READ_CHUNK):
            yield bytes(chunk)

    @asynccontextmanager
    async def local_copy(self, sha256: str) -> AsyncIterator[Path]:
        """The blob downloaded to a temporary file, removed when the context ends."""
        copy = anyio.Path(self.temporary())
        try:
            found = await obstore.get_async(self.store, self.key(sha256))
            async with await anyio.open_file(copy, "wb") as out:
                async for chunk in found.stream(min_chunk_size=READ_CHUNK):
                    await out.write(chunk)
            yield Path(copy)
        finally:
            await copy.unlink(missing_ok=True)

    async def remove_if_idle(self, sha256: str, idle: float) -> bool:
        times = [
            await self._modified(self.key(sha256)),
            await self._modified(f"{_REUSED}/{sha256}"),
        ]
        known = [t for t in times if t is not None]
        if known and time.time() - max(known) < idle:
            return False
        await obstore.delete_async(self.store, [self.key(sha256), f"{_REUSED}/{sha256}"])
        return True

    async def stored(self, idle: float) -> list[str]:
        horizon = time.time() - idle
        found = []
        async for batch in obstore.list(self.store, chunk_size=1000):
            for item in batch:
                path = item["path"]
                if path.startswith(f"{_REUSED}/"):
                    continue
                if item["last_modified"].timestamp() < horizon:
                    found.append(path.rsplit("/", 1)[-1])
        return found

    async def _modified(self, key: str) -> float | None:
        """When the object `key` was last written (Unix seconds), or None if there is none."""
        try:
            meta = await obstore.head_async(self.store, key)
        except FileNotFoundError:
            return None
        modified: dt.datetime = meta["last_modified"]
        return modified.timestamp()
