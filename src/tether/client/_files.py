"""File pieces shared by both client flavours: what an upload may read from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

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


@contextmanager
def opened_source(source: Source) -> Iterator[tuple[BinaryIO, int | None]]:
    """The stream to read and its remaining size when known (None for pipes)."""
    if isinstance(source, tuple):
        source = source[1]
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        with path.open("rb") as stream:
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
