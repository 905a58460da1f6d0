"""What a realtime frame is, and the one small interface through which an area answers the
frames it owns (`Hub.operations`): every area may import this module, none imports the hub."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from tether.server.identity.credentials import Principal


class Frame(msgspec.Struct, omit_defaults=True):
    op: str
    id: int | str | None = None
    channel: str | None = None
    system: bool = False
    consumer: bool = False
    name: str | None = None
    payload: Any = None
    timeout: float = 0.1
    broadcast: str | None = None
    types: list[str] | None = None
    presence: bool = False
    command: str | None = None
    state: str | None = None
    result: Any = None
    error: str | None = None
    progress: Any = None
    version: int | None = None
    reported: Any = None
    report_id: str | None = None


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Socket(Protocol):
    """A client's socket as an area sees it: who it is, where it was opened, what it asked an
    area to deliver, and a way to send it a frame."""

    principal: Principal
    takes: set[str]

    @property
    def path(self) -> str: ...

    def offer(self, frame: dict[str, Any] | str) -> bool: ...


Operation = Callable[[Any, Frame], Awaitable[dict[str, Any] | None]]
"""An area's answer to a frame from a `Socket`: the reply to send (None for none); a
`FrameError` or a `Problem` becomes an error frame."""
