"""What devices said they have installed in their update checks, written behind.

A check is the hot path of a fleet: noting what a device has installed costs a dictionary
lookup, and what changed is written every `FLUSH` seconds in one transaction for many devices.
Readers of installed packages (`updates.installed`, the device list's `installed[...]` filter)
call `flush()` first, so this process's own checks always show in what it answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.server.db.engine import utcnow
from tether.server.db.tables import installed_packages, resources

if TYPE_CHECKING:
    from tether.server.state import TimedCache

logger = logging.getLogger("tether.server")

_REMEMBERED = 100_000
"""How many devices' installed packages a process remembers, to skip writing them again."""
FLUSH = 0.5
"""Seconds between two writes of the installed packages checks reported."""
BATCH = 500
"""Devices written in one statement."""

Noted = tuple[tuple[str, str], ...]
"""A device's installed packages, (reference, version) sorted by reference."""


class InstalledWrites:
    """What devices said they have installed in their checks, written behind in batches."""

    def __init__(self, engine: AsyncEngine, spread: TimedCache) -> None:
        self.engine = engine
        self.spread = spread
        """The counts across each organization, dropped when a write changes them."""
        self._remembered: dict[str, Noted] = {}
        """What this process last noted of each device (written, or pending)."""
        self._pending: dict[str, tuple[str, Noted]] = {}
        """Devices whose installed packages changed since the last write: org id, packages."""
        self._writing = asyncio.Lock()

    def note(self, org_id: str, device_id: str, installed: dict[str, str]) -> None:
        """Keep what a device said it has installed, to write soon when it changed."""
        key = tuple(sorted(installed.items()))
        if self._remembered.get(device_id) == key:
            return
        if len(self._remembered) >= _REMEMBERED:
            self._remembered.clear()
        self._remembered[device_id] = key
        self._pending[device_id] = (org_id, key)

    def forget(self, device_id: str) -> None:
        """A device's installed packages were written another way (a report), or it was
        deleted: what was pending for it is older. (A write skips deleted devices.)"""
        self._remembered.pop(device_id, None)
        self._pending.pop(device_id, None)

    async def flush(self) -> None:
        """Write what is pending (returns at once when nothing is). On failure what was
        taken is pending again, unless newer news of a device came meanwhile."""
        if not self._pending:
            return
        async with self._writing:
            pending, self._pending = self._pending, {}
            try:
                await self._write(pending)
            except BaseException:
                self._pending = pending | self._pending
                raise
        for org_id in {org_id for org_id, _ in pending.values()}:
            self.spread.drop(org_id)

    async def _write(self, pending: dict[str, tuple[str, Noted]]) -> None:
        now = utcnow()
        devices = list(pending)
        async with self.engine.begin() as conn:
            for start in range(0, len(devices), BATCH):
                batch = devices[start : start + BATCH]
                await conn.execute(
                    installed_packages.delete().where(installed_packages.c.device_id.in_(batch))
                )
                alive = set(
                    (
                        await conn.execute(
                            sa.select(resources.c.id).where(resources.c.id.in_(batch))
                        )
                    ).scalars()
                )
                rows = [
                    {
                        "device_id": device_id,
                        "reference": reference,
                        "org_id": pending[device_id][0],
                        "version": version,
                        "updated_at": now,
                    }
                    for device_id in batch
                    if device_id in alive
                    for reference, version in pending[device_id][1]
                ]
                if rows:
                    await conn.execute(installed_packages.insert(), rows)

    async def follow(self) -> None:
        """Write every `FLUSH` seconds until cancelled, and once more then."""
        try:
            while True:
                await asyncio.sleep(FLUSH)
                try:
                    await self.flush()
                except Exception:
                    logger.exception("writing devices' installed packages failed; trying again")
        finally:
            await asyncio.shield(self.flush())
