"""`AsyncTelemetry`: stage, commit and push device measurements, and read them back.

This file is the source of both twins: `scripts/unasync.py` writes `_sync_telemetry.py`
(`Telemetry`) from it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tether._exceptions import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    NetworkError,
    PushError,
    RateLimitError,
    ServerError,
)
from tether._values import field_problem, value_problem
from tether.client._telemetry import (
    OnFull,
    Outbox,
    Reading,
    RejectedEntry,
    TimeLike,
    default_outbox_path,
    parse_duration,
    unix_seconds,
)
from tether.client._workers import _async_lock, _AsyncWorker

if TYPE_CHECKING:
    from tether.client._async_client import AsyncClient

logger = logging.getLogger("tether")

_RETAINED = (NetworkError, ServerError, RateLimitError, AuthenticationError)


def _device_id(device: Any) -> str:
    return str(getattr(device, "id", device))


class AsyncTelemetry:
    """Telemetry of one device through one client.

    `add_value()` stages values, `commit()` locks them into an entry in the outbox on disk (it
    survives a crash from then on), `push()` delivers committed entries; each batch carries an
    id, so a batch delivered twice is stored once. `latest()` and `query()` read values back.
    With device credentials the device is the client's own; otherwise pass `device=`.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        device_id: str | None = None,
        outbox: str | os.PathLike[str] | None = None,
        max_entries: int = 1_000_000,
        on_full: OnFull = "error",
        batch_points: int = 5000,
    ) -> None:
        credentials = client.credentials
        own = credentials.device_id if credentials.kind == "device" else None
        self.device_id = device_id or own
        self._client = client
        self._outbox_path = outbox
        self._outbox_options: dict[str, Any] = {"max_entries": max_entries, "on_full": on_full}
        self._outbox: Outbox | None = None
        self._staged: dict[str, Any] = {}
        self._batch_points = max(1, batch_points)
        self._lock = _async_lock()
        self._worker: _AsyncWorker | None = None
        self._failures = 0

    @property
    def outbox(self) -> Outbox:
        """The on-disk queue of committed entries, opened on first use."""
        if self._outbox is None:
            path = self._outbox_path or default_outbox_path(self.device_id)
            self._outbox = Outbox(path, **self._outbox_options)
        return self._outbox

    @property
    def staged(self) -> dict[str, Any]:
        """Values added since the last commit."""
        return dict(self._staged)

    @property
    def pending(self) -> int:
        """Committed entries the server has not acknowledged yet."""
        return self.outbox.pending()

    def add_value(self, field: str, value: Any) -> None:
        """Stage a value (number, boolean, string, or small JSON object or array); the same
        field again before a commit replaces it. Raises ValueError for what cannot be stored."""
        problem = field_problem(field) or value_problem(value)
        if problem:
            raise ValueError(f"{field!r}: {problem}")
        self._staged[field] = value

    def commit(self, ts: TimeLike | None = None) -> int:
        """Lock the staged values into one entry stamped `ts` (default: now) in the outbox on
        disk. Returns how many values it holds (0, and nothing written, if none were staged).
        An entry belongs to a device: without one, nothing is written and it raises
        `ConfigurationError` (an entry of no device could never be pushed)."""
        if not self._staged:
            return 0
        self._require_device()
        stamp = time.time() if ts is None else unix_seconds(ts)
        self.outbox.add(stamp, self._staged)
        count = len(self._staged)
        self._staged = {}
        return count

    async def push(self) -> int:
        """Deliver every committed entry, oldest first; returns how many entries went.

        Raises `PushError`: with `retained_data=True` when the entries are still queued
        (network trouble, 5xx, 429, 401: push again later), `False` when the server refused
        them as invalid or forbidden (they were moved aside: `rejected()`)."""
        path = f"devices/{self._require_device()}/telemetry"
        pushed = 0
        async with self._lock:
            while True:
                batch = self.outbox.next_batch(self._batch_points)
                if batch is None:
                    return pushed
                body = {
                    "batch": batch.id,
                    "entries": [{"ts": e.ts, "values": e.values} for e in batch.entries],
                }
                try:
                    await self._client.post(path, body)
                except _RETAINED as exc:
                    raise PushError(
                        f"{self.pending} entries are still queued; push again later ({exc})",
                        retained_data=True,
                        cause=exc,
                        pushed=pushed,
                    ) from exc
                except APIError as exc:
                    if exc.code == "too_many_points" and len(batch.entries) > 1:
                        self._batch_points = max(1, batch.points // 2)
                        self.outbox.release(batch.id)
                        continue
                    moved = self.outbox.reject(
                        batch, exc.status, exc.code, exc.message, _invalid_positions(exc)
                    )
                    raise PushError(
                        f"The server refused {moved} entries ({exc}); they were moved aside, "
                        "see rejected()",
                        retained_data=False,
                        cause=exc,
                        pushed=pushed,
                    ) from exc
                self.outbox.acknowledge(batch.id)
                pushed += len(batch.entries)

    async def commit_and_push(self, ts: TimeLike | None = None) -> int:
        """`commit()` then `push()`; returns how many entries were pushed."""
        self.commit(ts)
        return await self.push()

    def rejected(self) -> list[RejectedEntry]:
        """Entries the server refused, with its status, code and reason."""
        return self.outbox.rejected()

    def retry_rejected(self) -> int:
        """Queue the rejected entries again; returns how many."""
        return self.outbox.retry_rejected()

    def start(self, interval: float = 5.0, *, max_delay: float = 300.0) -> None:
        """Push in the background every `interval` seconds; after a failure that kept the data,
        wait longer each time (doubling, with jitter, up to `max_delay`)."""
        if self._worker is not None:
            return
        self._require_device()
        self.outbox  # noqa: B018 - opened here, not in the worker and the caller at once

        async def step() -> float:
            try:
                await self.push()
            except PushError as exc:
                if not exc.retained_data:
                    logger.warning("telemetry push: %s", exc)
                    return interval
                self._failures += 1
                hint = exc.cause.retry_after if isinstance(exc.cause, RateLimitError) else None
                backoff = min(max_delay, interval * 2**self._failures)
                delay: float = max(hint or 0.0, backoff * random.uniform(0.5, 1.0))
                logger.info("telemetry push failed (%s); next try in %.1f s", exc, delay)
                return delay
            self._failures = 0
            return interval

        self._worker = _AsyncWorker(step)
        self._worker.start()

    async def stop(self) -> None:
        """Stop background pushing (what is committed stays in the outbox)."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.stop()

    async def latest(
        self, fields: Iterable[str] | None = None, *, device: Any = None
    ) -> dict[str, Reading]:
        """The newest value of each field (or of `fields`) of the device."""
        if isinstance(fields, str):
            raise ConfigurationError(
                "latest() takes a list of field names; to name the device, pass it by keyword: "
                f"latest(device={fields!r}) or latest([{fields!r}])."
            )
        params = {"field": list(fields)} if fields else None
        data = await self._client.get(f"devices/{self._device(device)}/telemetry/latest", params)
        return {name: Reading.from_api(item) for name, item in data["values"].items()}

    async def query(
        self,
        field: str,
        *,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        every: float | str | dt.timedelta | None = None,
        agg: str | None = None,
        device: Any = None,
    ) -> list[Reading]:
        """A field's values in [since, until), oldest first; with `every`, one aggregate
        (`agg`: avg, min, max, count or last; default avg) per bucket of that many seconds."""
        params: dict[str, Any] = {"field": field}
        if since is not None:
            params["since"] = unix_seconds(since)
        if until is not None:
            params["until"] = unix_seconds(until)
        if every is not None:
            params["every"] = parse_duration(every)
        if agg is not None:
            params["agg"] = agg
        points = await self._client.get_all(
            f"devices/{self._device(device)}/telemetry", params, key="points"
        )
        return [Reading.from_api(point) for point in points]

    async def close(self) -> None:
        """Stop background pushing and close the outbox file."""
        await self.stop()
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    def _require_device(self, way: str = "AsyncTelemetry(client, device_id=...)") -> str:
        if not self.device_id:
            raise ConfigurationError(
                f"Telemetry needs a device: sign in with device credentials, or name one with "
                f"{way}."
            )
        return self.device_id

    def _device(self, device: Any) -> str:
        if device is not None:
            return _device_id(device)
        return self._require_device("device= on this call")


def _invalid_positions(error: APIError) -> set[int] | None:
    """The entries the server named as invalid, or None (then the whole batch is refused)."""
    listed = error.problem.get("errors")
    if not isinstance(listed, list) or not listed:
        return None
    positions = {item.get("index") for item in listed if isinstance(item, dict)}
    return {p for p in positions if isinstance(p, int)} or None
