"""The sign-in rate limit: attempts per account and per client address, counted in the database.

An attempt is counted (one atomic upsert) before the password is verified, so a burst of
concurrent guesses cannot all pass the check before any failure is recorded, and every server
process sharing the database shares the budget. A success gives its attempt back: an account's
count starts again, an address's drops by one, so a fleet behind one address that signs in
successfully is never throttled.

Device and app secrets are 256-bit random values, not guessable passwords: their failures are
counted per secret *and caller address* (`secret_key`), so strangers who know a device's id can
throttle only themselves, never lock the real device out. HTTP Basic, checked on every request,
counts only failures.
"""

from __future__ import annotations

import math
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.server.db.engine import dialect_insert
from tether.server.db.tables import login_attempts
from tether.server.problems import Problem

_TABLE = login_attempts.c


def rate_limited(retry_after: int) -> Problem:
    return Problem(
        429,
        f"Too many failed attempts; try again in {retry_after} s.",
        code="rate_limited",
        headers={"Retry-After": str(retry_after)},
        extra={"retry_after": retry_after},
    )


def _address_key(address: str) -> str:
    return f"addr:{address}"


def client_address(scope: Any) -> str | None:
    """The address a request came from (the one a trusted proxy forwarded), which the limits
    count; None when the server was not told."""
    client = scope.get("client")
    return str(client[0]) if client else None


def secret_key(key: str, address: str | None) -> str:
    """The limit key of a device's or app's secret tried from `address` (the account alone
    only when the address is unknown)."""
    return f"basic:{key}" if address is None else f"basic:{key}@{address}"


class LoginLimiter:
    """At most `max_failures` attempts per account and `max_per_address` per client address
    in each `window` seconds."""

    def __init__(
        self, engine: AsyncEngine, max_failures: int, window: float, max_per_address: int
    ) -> None:
        self.engine = engine
        self.max_failures = max_failures
        self.max_per_address = max_per_address
        self.window = window
        self._blocked: dict[str, float] = {}
        insert = dialect_insert(engine.dialect.name)
        fresh = _TABLE.window_end <= sa.bindparam("now")
        statement = insert(login_attempts).values(
            key=sa.bindparam("key"), count=1, window_end=sa.bindparam("end")
        )
        self._count = statement.on_conflict_do_update(
            index_elements=[_TABLE.key],
            set_={
                "count": sa.case((fresh, 1), else_=_TABLE.count + 1),
                "window_end": sa.case((fresh, sa.bindparam("end")), else_=_TABLE.window_end),
            },
        ).returning(_TABLE.count, _TABLE.window_end)

    async def attempt(self, account: str, address: str | None) -> None:
        """Count one attempt for `account` (and `address`); 429 when either is over budget."""
        for key, limit in self._keys(account, address):
            await self._add(key, limit)

    async def failed(self, key: str, limit: int | None = None) -> None:
        """Count a failure that was not reserved beforehand (HTTP Basic), or a use of a budget
        that counts every use (pairing starts); 429 once over `limit` (default: the
        per-identity budget)."""
        await self._add(key, self.max_failures if limit is None else limit)

    async def counted(self, key: str, limit: int) -> bool:
        """Count one use of `key`: whether it is still within `limit` for this window (never
        raises; for budgets whose excess is ignored rather than refused)."""
        try:
            await self._add(key, limit)
        except Problem:
            return False
        return True

    def check(self, key: str) -> None:
        """Refuse at once a key this process saw go over budget (no database round trip)."""
        until = self._blocked.get(key)
        if until is not None:
            if until > time.time():
                raise rate_limited(max(1, math.ceil(until - time.time())))
            del self._blocked[key]

    async def succeeded(self, account: str, address: str | None) -> None:
        """Give the attempt back: the account starts again, the address drops by one."""
        async with self.engine.begin() as conn:
            await conn.execute(login_attempts.delete().where(_TABLE.key == account))
            if address is not None:
                await conn.execute(
                    login_attempts.update()
                    .where(_TABLE.key == _address_key(address), _TABLE.count > 0)
                    .values(count=_TABLE.count - 1)
                )
        self._blocked.pop(account, None)

    def _keys(self, account: str, address: str | None) -> list[tuple[str, int]]:
        keys = [(account, self.max_failures)]
        if address is not None:
            keys.append((_address_key(address), self.max_per_address))
        return keys

    async def _add(self, key: str, limit: int) -> None:
        self.check(key)
        now = time.time()
        async with self.engine.begin() as conn:
            count, window_end = (
                await conn.execute(
                    self._count, {"key": key[:400], "now": now, "end": now + self.window}
                )
            ).one()
        if count > limit:
            if len(self._blocked) > 100_000:
                self._blocked.clear()
            self._blocked[key] = window_end
            raise rate_limited(max(1, math.ceil(window_end - now)))

    async def prune(self) -> int:
        """Forget windows that have ended."""
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                login_attempts.delete().where(_TABLE.window_end <= time.time())
            )
        return int(gone.rowcount or 0)
