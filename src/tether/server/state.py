"""What the running server holds: settings, engines, token signer, event bus, realtime hub,
sign-in limits and revocations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.server.db.reads import Reader
from tether.server.files.blobs import BlobStore
from tether.server.identity.credentials import AccessTokens
from tether.server.identity.revocations import Revocations
from tether.server.identity.sealed import Sealer
from tether.server.identity.seen import Seen
from tether.server.identity.signin_limits import LoginLimiter
from tether.server.realtime.events import EventBus
from tether.server.realtime.hub import Hub
from tether.server.settings import Settings
from tether.server.updates.noted import InstalledWrites


class TimedCache:
    """Values kept for `ttl` seconds, for hot reads that may lag other server processes by
    that long (this process drops a key itself when it changes what the key holds)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        found = self._values.get(key)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, key: str, value: Any) -> None:
        if len(self._values) > 10_000:
            self._values.clear()
        self._values[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: str) -> None:
        self._values.pop(key, None)


@dataclass
class ServerState:
    settings: Settings
    engine: AsyncEngine
    reader: Reader
    tokens: AccessTokens
    blobs: BlobStore
    limiter: LoginLimiter
    revocations: Revocations
    sealer: Sealer
    seen: Seen
    """The devices this process saw, written out every few seconds (`online`)."""
    large_bodies: asyncio.Semaphore
    """How many large bodies (data items, feed entries) may be read at once."""
    bus: EventBus = field(default_factory=EventBus)
    hub: Hub = field(default_factory=Hub)
    """This process's realtime sockets and channels, and the backplane to the others."""
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    api_tokens: TimedCache = field(default_factory=lambda: TimedCache(5.0))
    """API tokens checked in the last seconds, with their principal and expiry; revocations
    still refuse them at once (`Revocations.refuses` runs after every lookup)."""
    live_deployments: TimedCache = field(default_factory=lambda: TimedCache(5.0))
    """Each organization's active and paused deployments, for update checks; dropped here when
    this process changes one, and when another process says (through the backplane) it did."""
    installed_spread: TimedCache = field(default_factory=lambda: TimedCache(5.0))
    """The versions installed across each organization (or project), counted at most every few
    seconds: a count over the whole fleet, shown on the console's overview and device list."""
    console_choices: TimedCache = field(default_factory=lambda: TimedCache(5.0))
    """Each console session's device-list filter choices, kept a few seconds."""
    areas: dict[str, Any] = field(default_factory=dict)
    """Each area's own part of the running server, by the area's name (`commands`)."""
    installed: InstalledWrites = field(init=False)
    """What devices said they have installed in their checks, written behind in batches."""

    def __post_init__(self) -> None:
        self.installed = InstalledWrites(self.engine, self.installed_spread)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` after the request returns; kept until done, cancelled at shutdown."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop_tasks(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


Tether = NamedDependency[ServerState]
"""How handlers ask for the running server's state: `tether: Tether`."""
