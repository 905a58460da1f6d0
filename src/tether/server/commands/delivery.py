"""The live part of commands: a device that asked for its commands over its realtime socket
gets each one the moment it is queued and everything still queued when it (re)connects;
its acknowledgements, progress and answers come back on the same socket. A sweeper ends what
ran out of time, and callers may wait for a command (or a group) to end.

Across a cluster, a command queued on one node reaches a device connected to another through
the event the first node publishes (`hub.hearing`); each node writes only to its own sockets.

Frames, from the device:

    {"op": "commands", "id": 1}                       start delivering my commands here
    {"op": "command_ack", "id": 2, "command": "<id>"}  stored: delivered
    {"op": "command_progress", "id": 3, "command": "<id>", "progress": {...}}
    {"op": "command_result", "id": 4, "command": "<id>", "state": "succeeded",
     "result": {...}, "error": null}

each answered with `{"op": "ack", "id": n, "command": {...}}` (the command as it now stands: a
device does not run one that is no longer `delivered` or `in_progress`); to the device:

    {"op": "command", "command": {"id": ..., "name": ..., "payload": ..., "timeout": ...}}
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.server.commands import store
from tether.server.db.engine import utcnow
from tether.server.identity.policy import decide
from tether.server.problems import Problem
from tether.server.realtime.events import Event
from tether.server.realtime.frames import Frame, FrameError, Socket
from tether.server.state import ServerState

logger = logging.getLogger("tether.server")

SWEEP_EVERY = 0.5
"""Seconds between two looks for commands that expired or timed out."""
SENT_WITHIN = 0.2
"""Seconds after a command is written to a socket by which `sent` is stored, if no
acknowledgement stored it first."""


class GroupCommit:
    """Devices' changes to their commands, applied together: what arrives while one
    transaction runs waits for the next and goes in it with everything else that arrived, as
    one read and one write (`store.apply`): a thousand acknowledgements are one commit."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._waiting: list[tuple[store.DeviceChange, asyncio.Future[tuple[Any, bool]]]] = []
        self._running: asyncio.Task[None] | None = None

    async def apply(self, change: store.DeviceChange) -> tuple[Any, bool]:
        """The command after `change`, and whether it moved (a `Problem` for a command its
        sender may not answer)."""
        future: asyncio.Future[tuple[Any, bool]] = asyncio.get_running_loop().create_future()
        self._waiting.append((change, future))
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._commit(batch)
        finally:
            self._running = None

    async def _commit(
        self, batch: list[tuple[store.DeviceChange, asyncio.Future[tuple[Any, bool]]]]
    ) -> None:
        try:
            outcomes = await store.apply(self.engine, [change for change, _ in batch])
        except Exception as exc:
            for _change, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_change, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Problem):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


class Delivery:
    """The commands area's part of the running server (`ServerState.areas["commands"]`)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.hub = state.hub
        self.writes = GroupCommit(state.engine)
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._sent: dict[str, dt.datetime] = {}
        """Commands written to a socket here and not yet stored as `sent`, with when: an
        acknowledgement usually comes first and stores both times in one commit."""
        self._storing_sent: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.hub.operations.update(
            {
                "commands": self._take,
                "command_ack": self._acknowledge,
                "command_progress": self._progress,
                "command_result": self._answer,
            }
        )
        self.hub.hearing.append(self._heard)
        self.state.spawn(self._sweep_forever())

    # -- publishing and waiting

    def changed(self, rows: Sequence[Any], action: Literal["created", "updated"]) -> None:
        """After a commit: announce each changed command and wake who waits for it; a new
        one goes to its device at once if the device listens on this node."""
        for event in store.events_of(rows, action):
            self.state.bus.publish(event)
            self._wake(event)
        if action == "created":
            self._push([store.out(row) for row in rows])

    def _heard(self, event: Event) -> None:
        """A command event from another node: wake waiters; deliver a new command to a
        device whose socket is here."""
        if event.type != "command":
            return
        self._wake(event)
        if event.action == "created" and isinstance(event.document, dict):
            with contextlib.suppress(msgspec.ValidationError):
                self._push([msgspec.convert(event.document, store.CommandOut)])

    def _wake(self, event: Event) -> None:
        group = _field(event.document, "group_id")
        for key in (event.id, group):
            for waiter in self._watchers.get(key or "", ()):
                waiter.set()

    async def changes_of(self, key: str, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a change to the command (or group) `key`."""
        waiter = asyncio.Event()
        self._watchers.setdefault(key, set()).add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter.wait()
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._watchers.get(key)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._watchers[key]

    # -- to the devices

    def _push(self, commands: Sequence[store.CommandOut]) -> None:
        """Write each command to its device's sockets here that asked for commands; the ones
        written become `sent` (in a task: the caller is not kept waiting)."""
        now = utcnow()
        for command in commands:
            sockets = [c for c in self.hub.sockets_of(command.device_id) if "commands" in c.takes]
            frame = {"op": "command", "command": command}
            if [c for c in sockets if c.offer(frame)]:
                self._sent.setdefault(command.id, now)
        if self._sent and self._storing_sent is None:
            loop = asyncio.get_running_loop()
            self._storing_sent = loop.call_later(SENT_WITHIN, self._store_sent)

    def _store_sent(self) -> None:
        self._storing_sent = None
        self.state.spawn(self._mark_sent())

    async def _mark_sent(self) -> None:
        """Store `sent` for the commands written to a socket that no acknowledgement has
        moved on yet."""
        sent, self._sent = self._sent, {}
        async with self.state.engine.begin() as conn:
            rows = await store.mark_sent(conn, sent)
        self.changed(rows, "updated")

    async def _take(self, client: Socket, frame: Frame) -> dict[str, Any]:
        """A device asks for its commands on this socket: everything still queued, oldest
        first, then each new one as it comes."""
        device_id = _answering(client).device_id or ""
        client.takes.add("commands")
        async with self.state.reader.connect() as reads:
            rows = await store.undelivered(reads, device_id)
        self._push([store.out(row) for row in rows])
        return {"op": "ack", "id": frame.id, "pending": len(rows)}

    # -- from the devices

    async def device_change(self, change: store.DeviceChange) -> store.CommandOut:
        """Apply a device's change to its command (with others, in one commit) and announce
        it: the command as it now stands."""
        row, moved = await self.writes.apply(change)
        if moved:
            self.changed([row], "updated")
        return store.out(row)

    async def _acknowledge(self, client: Socket, frame: Frame) -> dict[str, Any]:
        by, command_id = _answering(client), _command_of(frame)
        sent_at = self._sent.pop(command_id, None)
        command = await self.device_change(
            store.DeviceChange("ack", by, command_id, sent_at=sent_at)
        )
        return {"op": "ack", "id": frame.id, "command": command}

    async def _progress(self, client: Socket, frame: Frame) -> dict[str, Any]:
        by, command_id = _answering(client), _command_of(frame)
        progress = store.encoded(frame.progress, "progress")
        command = await self.device_change(
            store.DeviceChange("progress", by, command_id, progress=progress)
        )
        return {"op": "ack", "id": frame.id, "command": command}

    async def _answer(self, client: Socket, frame: Frame) -> dict[str, Any]:
        by, command_id = _answering(client), _command_of(frame)
        try:
            data = msgspec.convert(
                {"state": frame.state, "result": frame.result, "error": frame.error},
                store.AnswerIn,
            )
        except msgspec.ValidationError as exc:
            raise FrameError("invalid", str(exc)) from None
        command = await self.device_change(store.answer_of(by, command_id, data))
        return {"op": "ack", "id": frame.id, "command": command}

    # -- time

    async def sweep(self) -> int:
        """End the commands that ran out of time; how many."""
        async with self.state.engine.begin() as conn:
            rows = await store.sweep(conn)
        self.changed(rows, "updated")
        return len(rows)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                logger.exception("sweeping commands failed")
            await asyncio.sleep(SWEEP_EVERY)


def delivery_of(state: ServerState) -> Delivery:
    delivery: Delivery = state.areas["commands"]
    return delivery


def _answering(client: Socket) -> store.Answerer:
    """The device this socket speaks for, if the policy lets it answer its commands (a
    socket's command frames are a device's; people and apps answer over HTTP)."""
    principal = client.principal
    try:
        decide(principal, "command", "answer", principal.id, client.path)
    except Problem as exc:
        raise FrameError(exc.code, exc.detail) from exc
    if principal.type != "device":
        raise FrameError("forbidden", "Command frames are a device's own.")
    return store.Answerer(principal.org_id, principal.id)


def _command_of(frame: Frame) -> str:
    if not isinstance(frame.command, str) or not 1 <= len(frame.command) <= 36:
        raise FrameError("invalid", "command must be a command's id")
    return frame.command


def _field(document: Any, name: str) -> Any:
    return document.get(name) if isinstance(document, dict) else getattr(document, name, None)
