"""The in-place send of realtime fan-out, against a fake ASGI send, on asyncio's event loop
and on uvloop's (the one `tether serve` runs on)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from tether.server.realtime.stepped import DONE, finish, step

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run(loop_name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_send_with_room_completes_in_place(loop_name: str) -> None:
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    async def main() -> None:
        assert step(send("a").__await__()) is DONE
        assert sent == ["a"], "written before step returned, without a task"

    run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_send_that_waits_for_room_is_finished_in_order(loop_name: str) -> None:
    sent: list[str] = []

    async def main() -> None:
        room = asyncio.get_running_loop().create_future()

        async def send(text: str) -> None:
            await room
            await asyncio.sleep(0)
            sent.append(text)

        coroutine = send("late").__await__()
        waiting = step(coroutine)
        assert waiting is room
        finishing = asyncio.create_task(finish(coroutine, waiting))
        await asyncio.sleep(0)
        assert sent == []
        room.set_result(None)
        await asyncio.wait_for(finishing, 5)
        assert sent == ["late"]

    run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_failing_send_raises_from_step_and_from_finish(loop_name: str) -> None:
    async def broken(text: str) -> None:
        raise ConnectionResetError(text)

    async def main() -> None:
        with pytest.raises(ConnectionResetError):
            step(broken("x").__await__())
        room = asyncio.get_running_loop().create_future()

        async def fails_later(text: str) -> None:
            await room
            raise ConnectionResetError(text)

        coroutine = fails_later("y").__await__()
        waiting = step(coroutine)
        room.set_result(None)
        with pytest.raises(ConnectionResetError):
            await finish(coroutine, waiting)

    run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_cancelled_finish_closes_the_send(loop_name: str) -> None:
    closed: list[bool] = []

    async def main() -> None:
        room = asyncio.get_running_loop().create_future()

        async def send(text: str) -> None:
            try:
                await room
            finally:
                closed.append(True)

        coroutine = send("never").__await__()
        finishing = asyncio.create_task(finish(coroutine, step(coroutine)))
        await asyncio.sleep(0)
        finishing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await finishing
        assert closed == [True]

    run(loop_name, main)
