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
