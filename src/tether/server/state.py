"""What the running server holds: settings, engines, token signer, event bus, login limiter."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.server.blobs import BlobStore
from tether.server.credentials import AccessTokens
from tether.server.database import Reader
from tether.server.events import EventBus
from tether.server.settings import Settings


class LoginLimiter:
    """Counts failed logins per identity and refuses more than the limit within the window."""

    def __init__(self, max_failures: int, window: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, key: str) -> int:
        """Seconds to wait before `key` may try again; 0 when it may try now."""
        now = time.monotonic()
        failures = self._recent(key, now)
        if len(failures) < self.max_failures:
            return 0
        return max(1, int(failures[0] + self.window - now + 0.999))

    def failed(self, key: str) -> None:
        self._failures.setdefault(key, deque()).append(time.monotonic())
        if len(self._failures) > 100_000:
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


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
    bus: EventBus = field(default_factory=EventBus)
    limiter: LoginLimiter = field(default_factory=lambda: LoginLimiter(5, 60))
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    live_deployments: TimedCache = field(default_factory=lambda: TimedCache(1.0))
    """Each organization's active and paused deployments, for update checks."""

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
