"""Background work for the SDK in both flavours: an asyncio task or a daemon thread that runs
one step again and again, waiting between steps as long as the step asks, woken early to stop.

`scripts/unasync.py` maps `_AsyncWorker` to `_Worker` and `_async_lock` to `_sync_lock`, so the
generated blocking code uses the thread flavour.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

logger = logging.getLogger("tether")
T = TypeVar("T")

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
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()

    def wake(self) -> None:
        """Run the next step now rather than after the wait the last one asked for."""
        self._wake.set()

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
            if delay > 0:
                self._wake.wait(delay)
                self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None


async def _async_offload(work: Callable[..., T], *args: Any) -> T:
    """Run CPU or disk work (hashing, librsync) on a worker thread, off the event loop."""
    return await asyncio.to_thread(work, *args)


def _sync_offload(work: Callable[..., T], *args: Any) -> T:
    """Run the work in place: the blocking twin has no loop to keep free."""
    return work(*args)


def _async_lock() -> asyncio.Lock:
    return asyncio.Lock()


def _sync_lock() -> threading.Lock:
    return threading.Lock()


# Queues, futures and sockets in both flavours, for code that unasync turns into its twin.


def _async_queue() -> asyncio.Queue[Any]:
    return asyncio.Queue()


def _sync_queue() -> queue.Queue[Any]:
    return queue.Queue()


async def _async_get(source: asyncio.Queue[Any], timeout: float | None) -> Any:
    """The next item, waiting up to `timeout` seconds (TimeoutError after)."""
    if timeout is not None and timeout <= 0:
        try:
            return source.get_nowait()
        except asyncio.QueueEmpty:
            raise TimeoutError from None
    return await asyncio.wait_for(source.get(), timeout)


def _sync_get(source: queue.Queue[Any], timeout: float | None) -> Any:
    try:
        if timeout is not None and timeout <= 0:
            return source.get_nowait()
        return source.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError from None


def _async_future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


def _sync_future() -> concurrent.futures.Future[Any]:
    return concurrent.futures.Future()


async def _async_result(future: asyncio.Future[Any], timeout: float | None) -> Any:
    return await asyncio.wait_for(future, timeout)


def _sync_result(future: concurrent.futures.Future[Any], timeout: float | None) -> Any:
    return future.result(timeout)


def _settle(future: asyncio.Future[Any] | concurrent.futures.Future[Any], value: Any) -> None:
    """Resolve a future of either flavour once; an exception value is raised by its waiter."""
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


async def _async_ws_connect(url: str, headers: dict[str, str]) -> Any:
    from websockets.asyncio.client import connect

    return await connect(url, additional_headers=headers, open_timeout=10, max_size=2**22)


def _sync_ws_connect(url: str, headers: dict[str, str]) -> Any:
    from websockets.sync.client import connect

    connection = connect(url, additional_headers=headers, open_timeout=10, max_size=2**22)
    return connection.__enter__()  # kept open past this call; closed by its owner


async def _async_call(function: Callable[..., Any], *args: Any) -> Any:
    """Call a handler, awaiting what it returns when it is a coroutine."""
    value = function(*args)
    if inspect.isawaitable(value):
        value = await value
    return value


def _sync_call(function: Callable[..., Any], *args: Any) -> Any:
    value = function(*args)
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise TypeError("an async handler needs the AsyncClient; the Client calls plain functions")
    return value


def _async_start(work: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    """Run `work` beside the caller (a task here, a thread in the blocking twin)."""
    return asyncio.get_running_loop().create_task(work())


def _sync_start(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


async def _async_join(handle: asyncio.Task[None], timeout: float | None) -> bool:
    """Wait up to `timeout` seconds for started work to end; whether it did (it goes on)."""
    done, _ = await asyncio.wait({handle}, timeout=timeout)
    return bool(done)


def _sync_join(handle: threading.Thread, timeout: float | None) -> bool:
    handle.join(timeout)
    return not handle.is_alive()
