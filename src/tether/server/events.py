"""The internal event bus: every resource change is published here after it commits.

Subscribers get their own bounded queue; a subscriber that falls behind loses its oldest
events rather than slowing the publisher. The realtime area streams these to clients; a Redis
back end can carry them across server processes behind the same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec

Action = Literal["created", "updated", "deleted", "moved"]


class Event(msgspec.Struct, frozen=True):
    """A change to one object of one organization."""

    org_id: str
    type: str
    action: Action
    id: str
    document: Any = None

    @property
    def name(self) -> str:
        return f"{self.type}:{self.action}"


class EventBus:
    """In-process publish/subscribe for events."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def publish(self, event: Event) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
