"""Revocation that bites: credentials refused from the moment their principal, API token or
sign-in is revoked, on HTTP and on open sockets, in every server process.

Access tokens are signed and checked without a database round trip, so revoking one means
remembering "nothing this subject was issued before time T is valid". A subject is a user's,
device's or app's id (deleted, password changed, secret rotated), an API token's id (revoked),
or a sign-in's refresh-token family id (logout, refresh-token reuse). Each process keeps the
revocations in memory, writes new ones to the shared database and reads the others' every
`POLL` seconds, so a revocation bites everywhere within a second; open sockets of a revoked
credential are closed (`listeners`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tether.server.db.tables import revocations
from tether.server.identity.credentials import Principal

logger = logging.getLogger("tether.server")

POLL = 0.5
"""Seconds between two reads of the other processes' revocations."""
_OVERLAP = 5.0
"""How far back each read looks, so a revocation committed late is still seen."""


class Revocations:
    """This process's view of what has been revoked, and the way to revoke more."""

    def __init__(self, engine: AsyncEngine, keep: float) -> None:
        self.engine = engine
        self.keep = keep
        """Seconds a revocation matters: the longest life of what it refuses."""
        self._revoked: dict[str, float] = {}
        self.listeners: list[Callable[[str, float], None]] = []

    def refuses(self, principal: Principal) -> bool:
        """Whether `principal`'s credential was issued before a revocation that covers it."""
        revoked = self._revoked
        if not revoked:
            return False
        for subject in (principal.id, principal.token_id, principal.session_id):
            if subject is not None:
                when = revoked.get(subject)
                if when is not None and when >= principal.issued_at:
                    return True
        return False

    async def revoke(self, conn: AsyncConnection, subjects: Iterable[str]) -> None:
        """Revoke everything issued to `subjects` until now, inside the caller's transaction
        (and at once in this process)."""
        now = time.time()
        subjects = list(subjects)
        if subjects:
            await conn.execute(
                revocations.insert(), [{"subject": s, "revoked_at": now} for s in subjects]
            )
            for subject in subjects:
                self._apply(subject, now)

    def _apply(self, subject: str, when: float) -> None:
        if self._revoked.get(subject, -1.0) >= when:
            return
        self._revoked[subject] = when
        for listener in self.listeners:
            listener(subject, when)

    async def load(self, since: float) -> None:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(revocations.c.subject, revocations.c.revoked_at).where(
                    revocations.c.revoked_at >= since
                )
            )
            for subject, when in rows:
                self._apply(str(subject), float(when))

    async def follow(self) -> None:
        """Read the other processes' revocations as they come, and forget old ones."""
        since = time.time() - self.keep
        last_prune = time.monotonic()
        while True:
            started = time.time()
            try:
                await self.load(since)
                since = started - POLL - _OVERLAP
                if time.monotonic() - last_prune > 3600:
                    await self.prune()
                    last_prune = time.monotonic()
            except Exception:
                logger.exception("reading revocations failed; trying again")
            await asyncio.sleep(POLL)

    async def prune(self) -> None:
        horizon = time.time() - self.keep
        async with self.engine.begin() as conn:
            await conn.execute(revocations.delete().where(revocations.c.revoked_at < horizon))
        self._revoked = {s: t for s, t in self._revoked.items() if t >= horizon}
