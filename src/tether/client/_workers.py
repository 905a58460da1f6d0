"""Background work for the SDK in both flavours: an asyncio task or a daemon thread that runs
one step again and again, waiting between steps as long as the step asks, woken early to stop.

`scripts/unasync.py` maps `_AsyncWorker` to `_Worker` and `_async_lock` to `_sync_lock`, so the
generated blocking code uses the thread flavour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

logger = logging.getLogger("tether")

_AFTER_CRASH = 30.0


class _AsyncWorker:
    """Runs `step` as an asyncio task until `stop()`; `step` returns the seconds to wait."""

    def __init__(self, step: Callable[[], Awaitable[float]]) -> None:
        self._step = step
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping:
            try:
                delay = await self._step()
            except Exception:
                logger.exception("background step failed; trying again in %.0f s", _AFTER_CRASH)
                delay = _AFTER_CRASH
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None


class _Worker:
    """Runs `step` in a daemon thread until `stop()`; `step` returns the seconds to wait."""

    def __init__(self, step: Callable[[], float]) -> None:
        self._step = step
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tether-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            try:
                delay = self._step()
            except Exception:
                logger.exception("background step failed; trying again in %.0f s", _AFTER_CRASH)
                delay = _AFTER_CRASH
            if self._stopping:
                return
            self._wake.wait(delay)
            self._wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None


def _async_lock() -> asyncio.Lock:
    return asyncio.Lock()


def _sync_lock() -> threading.Lock:
    return threading.Lock()
