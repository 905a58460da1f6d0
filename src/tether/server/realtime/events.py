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


_SECRETS = frozenset({"secret", "secret_hash", "token", "token_hash", "private_key", "password"})
"""Fields no event carries, whatever publishes it: events reach every listener allowed to read
the object, and a credential must never travel that way."""


def without_secrets(document: Any) -> Any:
    """`document` (a struct or a mapping) with its secret fields removed."""
    if isinstance(document, msgspec.Struct):
        shown = {f: getattr(document, f) for f in document.__struct_fields__}
        if not any(shown.get(name) is not None for name in _SECRETS):
            return document
        document = shown
    if isinstance(document, dict) and not _SECRETS.isdisjoint(document):
        return {k: v for k, v in document.items() if k not in _SECRETS}
    return document


class EventBus:
    """In-process publish/subscribe for events. Secrets are stripped here, on the way in."""

    def __init__(self, queue_size: int = 20_000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def publish(self, event: Event) -> None:
        document = without_secrets(event.document)
        if document is not event.document:
            event = Event(event.org_id, event.type, event.action, event.id, document)
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
