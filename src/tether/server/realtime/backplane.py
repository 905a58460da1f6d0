"""The realtime backplane: what carries broadcasts, delivery counts, responses, presence and
resource events between server processes.

The hub talks to one `Backplane` and never asks which: `LocalBackplane` for a single process
(nothing to carry), `RedisBackplane` (`tether.server.realtime.relay`) for several. A backplane
calls back into its process's hub through the `Node` protocol, so neither imports the other.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from tether.server.realtime.events import Event

ChannelKey = tuple[str, str, bool, bool]
"""A channel: organization id, name, system flag, consumer flag."""


class Member(Protocol):
    """A subscriber as the backplane sees it: who it is, for presence."""

    @property
    def member(self) -> dict[str, Any]: ...


class Node(Protocol):
    """What a backplane hands to its own process's hub."""

    node: str

    def deliver_broadcast(self, key: ChannelKey, frame: dict[str, Any]) -> int: ...

    def delivered(self, broadcast_id: str, node: str, count: int) -> None: ...

    def answered(self, space: str, broadcast_id: str, answer: dict[str, Any]) -> None: ...

    def tell_watchers(self, key: ChannelKey, frame: dict[str, Any]) -> None: ...

    def heard(self, event: Event) -> None: ...

    def subscriptions(self) -> list[tuple[ChannelKey, Member]]: ...


class BackplaneDown(Exception):
    """The other server processes cannot be reached now; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Backplane:
    """The single-process backplane, and the interface every backplane offers: there are no
    other nodes, so there is nothing to carry and nobody else to hear from."""

    problem: str | None = None
    """Why the backplane cannot reach the other nodes now, or None when it can."""

    async def run(self) -> None:
        """Carry messages until cancelled."""
        await asyncio.Event().wait()

    async def nodes(self) -> set[str]:
        """The other live nodes a broadcast waits to hear from; raises `BackplaneDown`."""
        return set()

    async def broadcast(self, key: ChannelKey, frame: dict[str, Any]) -> None:
        """Hand a broadcast frame to the other nodes; raises `BackplaneDown`."""

    def respond(self, origin: str, space: str, broadcast_id: str, answer: dict[str, Any]) -> None:
        """Carry an answer (who gave it, and its payload) to the node whose broadcast it
        answers."""

    def presence(self, key: ChannelKey, frame: dict[str, Any], client: Member, change: str) -> None:
        """Tell the other nodes that `client` joined or left `key`."""

    async def members(self, key: ChannelKey, local: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Everyone in `key` on every live node, given this node's own `local` members."""
        return local

    def event(self, event: Event) -> None:
        """Carry a resource event to the other nodes."""


class LocalBackplane(Backplane):
    """The embedded default: one process, no Redis."""
