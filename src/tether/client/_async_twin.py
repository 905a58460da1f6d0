"""`AsyncTwins`: read and change device twins (people and apps), and follow and report one's
own (a device).

This file is the source of both twins: `scripts/unasync.py` writes `_sync_twin.py` (`Twins`)
from it.

A device that `start()`s tells the server the desired version it applied last and gets one
catch-up to the latest, then each change as it is made; `on_desired(callback)` is called
with each patch and the whole desired state after it. `report(patch)` keeps the patch on disk
and sends it in order until the server has it, once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether._exceptions import ConfigurationError, TetherError
from tether.client._telemetry import default_outbox_path
from tether.client._twin import TwinStore
from tether.client._workers import _async_call, _AsyncWorker

if TYPE_CHECKING:
    from tether.client._async_client import AsyncClient

logger = logging.getLogger("tether")

RETRY = 5.0
IDLE = 3600.0

DesiredCallback = Callable[[dict[str, Any], dict[str, Any], int], Any]
"""Called as `callback(patch, desired, version)`: the change, and desired after it."""


def _id_of(thing: Any) -> str:
    return str(getattr(thing, "id", thing))


class AsyncTwins:
    """Device twins through one client."""

    def __init__(self, client: AsyncClient, store: str | os.PathLike[str] | None = None) -> None:
        self._client = client
        self._store_path = store
        self._store: TwinStore | None = None
        self._callbacks: list[DesiredCallback] = []
        self._worker: _AsyncWorker | None = None
        self._pending: list[dict[str, Any]] = []
        self._socket = False

    # -- people and apps

    async def get(self, device: Any) -> dict[str, Any]:
        """The twin: desired, reported, tags, versions, metadata, delta, pending."""
        return dict(await self._client.get(f"devices/{_id_of(device)}/twin"))

    async def desire(
        self, device: Any, patch: dict[str, Any], *, if_version: int | None = None
    ) -> dict[str, Any]:
        """Merge `patch` into desired (None removes a key). With `if_version`, a desired that
        changed since that version is a `ConflictError`."""
        return await self._patch(device, {"desired": patch}, if_version)

    async def tag(
        self, device: Any, patch: dict[str, Any], *, if_version: int | None = None
    ) -> dict[str, Any]:
        """Merge `patch` into tags (never sent to the device)."""
        return await self._patch(device, {"tags": patch}, if_version)

    async def clear_when_reported(self, device: Any, clear: bool = True) -> dict[str, Any]:
        """Drop each desired value once reported matches it (so it stops being pending)."""
        return await self._patch(device, {"clear_when_reported": clear}, None)

    async def history(
        self, device: Any, *, section: str | None = None, since: Any = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The twin's changes, oldest first: each patch, the section after it, who, when."""
        query = {"section": section, "since": since, "limit": limit}
        page = await self._client.get(
            f"devices/{_id_of(device)}/twin/changes",
            {k: v for k, v in query.items() if v is not None},
        )
        return list(page["results"])

    async def summary(self) -> dict[str, int]:
        """How many twins have converged (reported matches desired) and how many pend."""
        return dict(await self._client.get("twins/summary"))

    async def _patch(
        self, device: Any, body: dict[str, Any], version: int | None
    ) -> dict[str, Any]:
        headers = None if version is None else {"If-Match": f'"{version}"'}
        path = f"devices/{_id_of(device)}/twin"
        return dict(await self._client.request("PATCH", path, json=body, headers=headers))

    # -- devices

    def on_desired(self, callback: DesiredCallback) -> DesiredCallback:
        """Call `callback(patch, desired, version)` on each change of desired (also usable
        as a decorator). With an `AsyncClient` it may be a coroutine function."""
        self._callbacks.append(callback)
        return callback

    def store(self) -> TwinStore:
        if self._store is None:
            credentials = self._client.credentials
            own = credentials.device_id if credentials.kind == "device" else None
            if own is None:
                raise ConfigurationError("Only a device follows its twin: use device credentials.")
            self._store = TwinStore(self._store_path or default_outbox_path(own))
        return self._store

    @property
    def desired(self) -> dict[str, Any]:
        """Desired as this device last applied it."""
        return self.store().desired()[1]

    @property
    def version(self) -> int:
        return self.store().desired()[0]

    async def start(self, timeout: float = 10) -> None:
        """Follow desired on the realtime socket (a catch-up first, then each change), and
        send queued reports in the background, until the client closes."""
        self.store()
        self._socket = True
        self._ensure_worker()
        await self._client.realtime.take("twin", self._received, self._follow_frame, timeout)

    async def sync(self) -> dict[str, Any]:
        """For a device without a socket: catch up with desired over HTTP (calling the
        callbacks) and send queued reports. Desired as it now stands."""
        store = self.store()
        device_id = self._client.credentials.device_id
        frame = await self._client.get(
            f"devices/{device_id}/twin/catch-up", {"version": store.desired()[0]}
        )
        if "patch" in frame or "replace" in frame:
            self._received({"since": store.desired()[0], **frame})
        while self._pending:
            await self._apply(self._pending.pop(0))
        await self._send_reports()
        return store.desired()[1]

    async def report(self, patch: dict[str, Any]) -> None:
        """Report state (a merge patch of reported): kept on disk at once, delivered in order
        when the server is reachable, applied there once."""
        self.store().queue(patch)
        if self._worker is not None:
            self._worker.wake()
        else:
            try:
                await self._send_reports()
            except TetherError as exc:
                logger.info("twin: report kept for later (%s)", exc)

    async def stop(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.stop()
        if self._store is not None:
            self._store.close()
            self._store = None

    def _follow_frame(self) -> dict[str, Any]:
        return {"op": "twin", "version": self.store().desired()[0]}

    def _received(self, frame: dict[str, Any]) -> None:
        self._pending.append(frame)
        if self._worker is not None:
            self._worker.wake()

    def _ensure_worker(self) -> None:
        if self._worker is None:
            self._worker = _AsyncWorker(self._step)
            self._worker.start()

    async def _step(self) -> float:
        while self._pending:
            await self._apply(self._pending.pop(0))
        try:
            await self._send_reports()
        except TetherError as exc:
            logger.info("twin: reports kept for later (%s)", exc)
            return RETRY
        return IDLE

    async def _apply(self, frame: dict[str, Any]) -> None:
        """Apply a desired change and tell the callbacks; out of step, ask for a catch-up."""
        applied = self.store().apply(frame)
        if applied is None:
            if frame.get("version", 0) > self.store().desired()[0] and self._socket:
                realtime = self._client.realtime
                try:
                    await realtime.send(self._follow_frame())
                except TetherError as exc:
                    logger.info("twin: catch-up not asked for (%s); the reconnect will", exc)
            return
        patch, desired = applied
        for callback in self._callbacks:
            try:
                await _async_call(callback, patch, desired, int(frame["version"]))
            except Exception:
                logger.exception("a desired-state callback failed")

    async def _send_reports(self) -> None:
        store = self.store()
        device_id = self._client.credentials.device_id
        realtime = self._client._realtime
        for seq, report_id, patch in store.reports():
            if self._socket and realtime is not None and realtime.is_connected:
                frame = {"op": "twin_report", "reported": patch, "report_id": report_id}
                await realtime.request(frame, 30)
            else:
                body = {"reported": patch, "report_id": report_id}
                await self._client.request("PATCH", f"devices/{device_id}/twin", json=body)
            store.sent(seq)
