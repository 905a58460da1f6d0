"""When each device was last seen, and so whether it is online.

A device is **online** when it was seen in the last `ONLINE_FOR` seconds: it made a request
with its credentials, or holds an open realtime socket (a device that listens for broadcasts
is online though it sends nothing). Noting a request costs a dictionary write; each server
process writes what it saw to `resources.seen_at` every `FLUSH` seconds, in one statement, so
every process and the API answer the same (`online`, `seen_at` on a device, `online=true|false`
on the device list), within `FLUSH` seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.server.db.engine import utcnow
from tether.server.db.tables import resources

logger = logging.getLogger("tether.server")

ONLINE_FOR = 300.0
"""Seconds after it was last seen that a device still counts as online."""
FLUSH = 15.0
"""Seconds between two writes of what this process saw."""

_SEEN = (
    resources.update()
    .where(resources.c.id == sa.bindparam("device_id"))
    .values(seen_at=sa.bindparam("seen"))
)


def online_since(now: dt.datetime | None = None) -> dt.datetime:
    """The oldest `seen_at` that still counts as online."""
    return (now or utcnow()) - dt.timedelta(seconds=ONLINE_FOR)


class Seen:
    """The devices this process saw since its last write."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._pending: dict[str, dt.datetime] = {}

    def saw(self, device_id: str) -> None:
        self._pending[device_id] = utcnow()

    async def flush(self, also: Iterable[str] = ()) -> int:
        """Write what was seen (and `also`, devices seen now: those with open sockets)."""
        now = utcnow()
        pending, self._pending = self._pending, {}
        for device_id in also:
            pending[device_id] = now
        if pending:
            rows = [{"device_id": k, "seen": v} for k, v in pending.items()]
            async with self.engine.begin() as conn:
                await conn.execute(_SEEN, rows)
        return len(pending)

    async def follow(self, connected: Callable[[], Iterable[str]]) -> None:
        """Write every `FLUSH` seconds until cancelled; `connected` names the devices with
        an open socket on this process."""
        try:
            while True:
                await asyncio.sleep(FLUSH)
                try:
                    await self.flush(connected())
                except Exception:
                    logger.exception("writing when devices were seen failed; trying again")
        finally:
            await asyncio.shield(self.flush())
