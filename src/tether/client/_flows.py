"""Multi-step protocols written once, driven by both twins.

A flow is a generator that yields steps (`Send` a request, `Sleep` a while) and finally returns
its result. `run_sync` and `run_async` are the only places that do I/O: they send requests with
httpx, sleep, translate httpx's exceptions into the SDK's, and throw those back into the flow so
it can decide to retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from tether._exceptions import NetworkError, RequestTimeout, TetherError

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Send | Sleep
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
        try:
            value = await client.send(step.request)
        except httpx.HTTPError as exc:
            error = translate(exc, step.request)


def pause(seconds: float) -> Flow[None]:
    """A flow that only waits: how shared code sleeps in either flavour."""
    yield Sleep(seconds)
