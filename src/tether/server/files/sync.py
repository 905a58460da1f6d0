"""rsync-style sync of files, in librsync's three steps.

Upload-sync: the server hands out the signature of its copy, the client sends a delta, the
server patches it into a new version. Download-sync: the client sends the signature of its copy
and the server answers with a delta.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get, post, put
from litestar.response import Stream

from tether import delta as rsync
from tether._exceptions import DeltaError
from tether.server.files.blobs import read_file
from tether.server.files.tree import (
    FileInfo,
    file_row,
    store_file,
)
from tether.server.identity.policy import allow
from tether.server.identity.scope import scoped_paths
from tether.server.problems import conflict, invalid
from tether.server.state import Tether

_HASHES = ("blake2", "md4")
_ROLLSUMS = ("rabinkarp", "rollsum")


@get(
    scoped_paths("/files/signature/{path:path}"),
    tags=["files"],
    summary="The librsync signature of the server's copy (upload-sync, step 1)",
    opt=allow("file", "read", query=("hash", "rollsum", "block_len"), raw_response="bytes"),
)
async def file_signature(request: Request[Any, Any, Any], tether: Tether) -> Response[bytes]:
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
    row = await file_row(request, tether)

    def sign(blob: Path) -> bytes:
        out = io.BytesIO()
        with blob.open("rb") as basis:
            rsync.signature(basis, out, hash=hash_, rollsum=rollsum, block_len=block_len)  # type: ignore[arg-type]
        return out.getvalue()

    async with tether.blobs.local_copy(row.sha256) as blob:
        body = await asyncio.to_thread(sign, blob)
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"X-Tether-Sha256": row.sha256, "ETag": f'"{row.sha256}"'},
    )


@put(
    scoped_paths("/files/patch/{path:path}"),
    tags=["files"],
    summary="Apply a librsync delta to the server's copy as a new version (upload-sync, step 3)",
    request_max_body_size=None,
    opt=allow(
        "file", "write", target="path", query=("basis",), raw_body="application/octet-stream"
    ),
)
async def file_patch(request: Request[Any, Any, Any], tether: Tether) -> FileInfo:
    row = await file_row(request, tether)
    basis = request.query_params.get("basis")
    if basis is None:
        raise invalid("Give basis: the sha256 of the version the delta was made against.")
    if basis != row.sha256:
        raise conflict("The file changed since its signature was taken.", "basis_changed")
    delta_file, _ = await tether.blobs.spool(request.stream(), tether.settings.max_file_size)
    result = tether.blobs.temporary()

    def apply(blob: Path) -> tuple[str, int]:
        with blob.open("rb") as old, delta_file.open("rb") as d, result.open("wb") as out:
            rsync.patch(old, d, out)
        size = result.stat().st_size
        with result.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest(), size

    try:
        async with tether.blobs.local_copy(row.sha256) as blob:
            sha256, size = await asyncio.to_thread(apply, blob)
        await tether.blobs.adopt(result, sha256)
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
    opt=allow("file", "read", raw_body="application/octet-stream", raw_response="bytes"),
)
async def file_delta(request: Request[Any, Any, Any], tether: Tether) -> Response[Any]:
    row = await file_row(request, tether)
    signature_file, _ = await tether.blobs.spool(request.stream(), tether.settings.max_file_size)
    result = tether.blobs.temporary()

    def make(blob: Path) -> None:
        with signature_file.open("rb") as sig, blob.open("rb") as new, result.open("wb") as out:
            rsync.delta(sig, new, out)

    try:
        async with tether.blobs.local_copy(row.sha256) as blob:
            await asyncio.to_thread(make, blob)
    except DeltaError as exc:
        result.unlink(missing_ok=True)
        raise invalid(f"The signature cannot be used: {exc.message}", "bad_signature") from None
    finally:
        signature_file.unlink(missing_ok=True)
    size = result.stat().st_size

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in read_file(result, 0, size):
                yield chunk
        finally:
            result.unlink(missing_ok=True)

    return Stream(
        stream(),
        media_type="application/octet-stream",
        headers={"X-Tether-Sha256": row.sha256, "Content-Length": str(size)},
    )


router = Router("/", route_handlers=[file_signature, file_patch, file_delta])
