"""Running a coroutine in place until it first waits: the fast path of realtime fan-out.

An ASGI send to a socket whose transport has room finishes without waiting, so a broadcast to
a thousand sockets can write each frame in place instead of waking a task per socket (which
was most of what such a broadcast cost). `step` runs a coroutine until it first waits;
`finish` drives one that did wait to its end, as a task would. Both re-enact what
`asyncio.Task` does with a coroutine, so `tests/server/test_stepped.py` pins them against a
fake send on asyncio's loop and on uvloop's: a change in either shows up there first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

DONE = object()
"""What `step` answers when the coroutine finished without waiting."""
Steps = Generator[Any, None, None]
"""A coroutine's `__await__()` iterator."""


def step(coroutine: Steps) -> Any:
    """Run `coroutine` until it first waits and return what it waits on (a future, or None
    for a bare yield), or `DONE` when it finished without waiting. Its exceptions propagate."""
    try:
        return coroutine.send(None)
    except StopIteration:
        return DONE


async def finish(coroutine: Steps, waiting: Any) -> None:
    """Drive a coroutine that `step` left waiting on `waiting` to its end."""
    try:
        while waiting is not DONE:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False  # taken over, as Task.__step does
                await waiting
            waiting = step(coroutine)
    finally:
        coroutine.close()
