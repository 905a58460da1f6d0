"""Multi-step protocols written once, driven by both twins.

A flow is a generator that yields steps (`Send` a request, `Sleep` a while) and finally returns
its result. `run_sync` and `run_async` are the only places that do I/O: they send requests with
httpx, sleep, translate httpx's exceptions into the SDK's, and throw those back into the flow so
it can decide to retry.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from tether._exceptions import NetworkError, RequestTimeout, TetherError

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float


class Signs(Protocol):
    """What `Renew` needs of a session: its token, a sign-in, and a lock of each flavour."""

    access_token: str | None
    lock: threading.Lock
    async_lock: asyncio.Lock

    def login_flow(self) -> Flow[None]: ...


@dataclass(frozen=True)
class Renew:
    """Sign in again unless another request has done so since this one saw `seen` as the
    token. Runners hold the session's lock while they sign in, so concurrent requests that
    found the token expired (or refused) make one refresh between them: a refresh token is
    spent when used, and a second use would revoke the whole sign-in."""

    session: Signs
    seen: str | None


Step = Send | Sleep | Renew
Flow = Generator[Step, Any, T]


def translate(exc: httpx.HTTPError, request: httpx.Request) -> TetherError:
    """The SDK error for an httpx failure; httpx errors never escape the SDK."""
    where = f"{request.method} {request.url}"
    if isinstance(exc, httpx.TimeoutException):
        error: TetherError = RequestTimeout(f"Timed out: {where}")
    else:
        error = NetworkError(f"Cannot reach the server ({exc.__class__.__name__}: {exc}): {where}")
    error.__cause__ = exc
    return error


def run_sync(flow: Flow[T], client: httpx.Client) -> T:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            continue
        if isinstance(step, Renew):
            try:
                with step.session.lock:
                    if step.session.access_token == step.seen:
                        run_sync(step.session.login_flow(), client)
            except TetherError as exc:
                error = exc
            continue
        try:
            value = client.send(step.request)
        except httpx.HTTPError as exc:
            error = translate(exc, step.request)


async def run_async(flow: Flow[T], client: httpx.AsyncClient) -> T:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            continue
        if isinstance(step, Renew):
            try:
                async with step.session.async_lock:
                    if step.session.access_token == step.seen:
                        await run_async(step.session.login_flow(), client)
            except TetherError as exc:
                error = exc
            continue
        try:
            value = await client.send(step.request)
        except httpx.HTTPError as exc:
            error = translate(exc, step.request)


def pause(seconds: float) -> Flow[None]:
    """A flow that only waits: how shared code sleeps in either flavour."""
    yield Sleep(seconds)
