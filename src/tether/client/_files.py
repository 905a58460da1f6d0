"""File pieces shared by both client flavours: what an upload may read from."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tether import delta as rsync
from tether._exceptions import LocalFileError

CHUNK = 1024 * 1024

Source = str | os.PathLike[str] | BinaryIO | tuple[str, BinaryIO]
"""An upload's bytes: a path, a binary file object, or a (filename, file object) pair."""


def source_name(source: Source) -> str | None:
    """The file name an upload carries: the pair's name, the path's, or the file object's."""
    if isinstance(source, tuple):
        return Path(source[0]).name
    if isinstance(source, str | os.PathLike):
        return Path(source).name
    name = getattr(source, "name", None)
    return Path(name).name if isinstance(name, str) else None


def upload_headers(source: Source, size: int | None, typed: bool = True) -> dict[str, str]:
    """An upload's headers: its length when known and, with `typed`, the media type its file
    name tells (`("plan.png", f)` is sent as image/png)."""
    headers = {"Content-Length": str(size)} if size is not None else {}
    name = source_name(source) if typed else None
    mime = mimetypes.guess_type(name)[0] if name else None
    if mime:
        headers["Content-Type"] = mime
    return headers


_REASONS: dict[type[OSError], str] = {
    FileNotFoundError: "No such file or folder",
    IsADirectoryError: "That is a folder, not a file",
    PermissionError: "Not allowed to read or write",
    NotADirectoryError: "Not a folder",
}


def local_file_error(exc: OSError, path: Path | None = None) -> LocalFileError:
    """The SDK's error for a local file that cannot be used, in words ("No such file or
    folder: x.bin"), not `[Errno 2] ...`."""
    filename = str(path) if path is not None else exc.filename
    where = f": {filename}" if filename else ""
    reason = next((r for kind, r in _REASONS.items() if isinstance(exc, kind)), exc.strerror)
    error = LocalFileError(f"{reason or exc}{where}")
    error.errno, error.filename = exc.errno, filename
    return error


@contextmanager
def opened_source(source: Source) -> Iterator[tuple[BinaryIO, int | None]]:
    """The stream to read and its remaining size when known (None for pipes)."""
    if isinstance(source, tuple):
        source = source[1]
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise local_file_error(exc, path) from exc
        with stream:
            yield stream, path.stat().st_size
        return
    size = None
    try:
        if source.seekable():
            here = source.tell()
            size = source.seek(0, os.SEEK_END) - here
            source.seek(here)
    except (OSError, ValueError):
        size = None
    yield source, size


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def write_delta(signature: bytes, path: Path, out: BinaryIO) -> int:
    """Write the delta from `signature` to the file at `path` into `out`; its size."""
    with path.open("rb") as new:
        rsync.delta(io.BytesIO(signature), new, out)
    return out.tell()


def signature_of(path: Path) -> bytes:
    with tempfile.TemporaryFile() as signature, path.open("rb") as basis:
        rsync.signature(basis, signature)
        signature.seek(0)
        return signature.read()


def patched(basis_path: Path, delta: bytes, result: Path) -> str:
    """Apply `delta` to the file at `basis_path` into `result`; the result's SHA-256."""
    with basis_path.open("rb") as basis, result.open("wb") as out:
        rsync.patch(basis, io.BytesIO(delta), out)
    return file_sha256(result)


def measure(stream: BinaryIO) -> tuple[int, str]:
    """The length and SHA-256 of the rest of `stream`, which is left where it was."""
    start, digest, length = stream.tell(), hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        length += len(chunk)
    stream.seek(start)
    return length, digest.hexdigest()
