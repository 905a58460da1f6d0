"""The one spelling of a path in a Tether file tree, shared by the SDK and the server.

A path is `/` plus names joined by `/`. Empty names collapse (`a//b` is `/a/b`); `.` and `..`,
NUL and other control characters, backslashes, names over 255 bytes and paths over 1024
characters are refused. On the server a path is only ever a key: bytes are stored by hash, so
no spelling of a path can reach the disk.
"""

from __future__ import annotations

MAX_PATH = 1024
MAX_NAME = 255


def clean_path(raw: str) -> str:
    """`raw` in canonical form; ValueError saying what is wrong with it."""
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ValueError("a path may not hold NUL or other control characters")
    if "\\" in raw:
        raise ValueError("a path separates names with /, not \\")
    names = [name for name in raw.split("/") if name]
    for name in names:
        if name in (".", ".."):
            raise ValueError("a path may not hold . or .. names")
        if len(name.encode()) > MAX_NAME:
            raise ValueError(f"a name may be at most {MAX_NAME} bytes")
    path = "/" + "/".join(names)
    if len(path) > MAX_PATH:
        raise ValueError(f"a path may be at most {MAX_PATH} characters")
    return path


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def ancestors(path: str) -> list[str]:
    """The folders above `path`, outermost first, without the root."""
    names = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(names[: i + 1]) for i in range(len(names))]
