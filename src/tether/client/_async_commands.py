"""`AsyncCommands`: send commands and follow them (people and apps), and run them (devices).

This file is the source of both twins: `scripts/unasync.py` writes `_sync_commands.py`
(`Commands`) from it.

A device registers a handler per command name and starts: commands arrive on its realtime
socket (or, with `poll()`, over HTTP), are kept in its inbox on disk before they are
acknowledged, and run one after the other, oldest first, each at most once (see
`_commands`). A handler that outlives its command's timeout does not hold up the next one:
the device moves on, and the late answer is still recorded when it comes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from tether._exceptions import (
    CommandTimeoutError,
    ConfigurationError,
    NotFoundError,
    RealtimeError,
    TetherError,
)
from tether.client._commands import Answer, Inbox, ReceivedCommand, answer_of
from tether.client._telemetry import default_outbox_path
from tether.client._workers import _async_call, _async_join, _async_start, _AsyncWorker

if TYPE_CHECKING:
    from tether.client._async_client import AsyncClient

logger = logging.getLogger("tether")

FINAL = frozenset({"succeeded", "failed", "rejected", "timed_out", "expired", "canceled"})
RETRY = 5.0
"""Seconds before a device tries again to acknowledge or answer while the server is away."""
IDLE = 3600.0
LONG_POLL = 30.0
"""Seconds one wait asks the server to hold the request (it answers sooner on a change)."""

Handler = Callable[[ReceivedCommand], Any]


def _id_of(thing: Any) -> str:
    return str(getattr(thing, "id", thing))


class AsyncCommand:
    """A command as its sender sees it: `state`, `result`, `error` and the time of each
    state (in `data`); `wait()` for its end, `cancel()` before delivery, `resend()`."""

    def __init__(self, commands: AsyncCommands, data: dict[str, Any]) -> None:
        self._commands = commands
        self.data = data

    id = property(lambda self: str(self.data["id"]))
    name = property(lambda self: str(self.data["name"]))
    device_id = property(lambda self: str(self.data["device_id"]))
    payload = property(lambda self: self.data.get("payload"))
    result = property(lambda self: self.data.get("result"))
    error = property(lambda self: self.data.get("error"))
    progress = property(lambda self: self.data.get("progress"))

    @property
    def state(self) -> str:
        """queued, sent, delivered, in_progress, succeeded, failed, rejected, timed_out,
        expired or canceled."""
        return str(self.data["state"])

    @property
    def done(self) -> bool:
        return self.state in FINAL

    async def refresh(self) -> AsyncCommand:
        self.data = await self._commands._client.get(f"commands/{self.id}")
        return self

    async def wait(self, timeout: float | None = 60.0) -> AsyncCommand:
        """Wait until the command ends (the server holds each request until a change); raise
        `CommandTimeoutError` if it has not after `timeout` seconds (None: as long as it
        takes). Returns it, in whichever final state."""
        data = await self._commands._waited(f"commands/{self.id}", timeout, self.done)
        self.data = data
        if not self.done:
            raise CommandTimeoutError(
                f"command {self.id} is still {self.state} after {timeout} s", self
            )
        return self

    async def cancel(self) -> AsyncCommand:
        """Take it back before the device has it (`ConflictError` once it has)."""
        self.data = await self._commands._client.post(f"commands/{self.id}/cancel")
        return self

    async def resend(self) -> AsyncCommand:
        """Send it again, as a new command to the same device."""
        return AsyncCommand(
            self._commands, await self._commands._client.post(f"commands/{self.id}/resend")
        )

    def __repr__(self) -> str:
        return f"<Command {self.name} {self.id} {self.state}>"


class AsyncCommandGroup:
    """A command sent to many devices: `counts` per state, `done` once every one ended."""

    def __init__(self, commands: AsyncCommands, data: dict[str, Any]) -> None:
        self._commands = commands
        self.data = data

    id = property(lambda self: str(self.data["id"]))
    name = property(lambda self: str(self.data["name"]))
    total = property(lambda self: int(self.data["total"]))

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.data.get("counts") or {})

    @property
    def done(self) -> bool:
        return bool(self.data.get("done"))

    async def refresh(self) -> AsyncCommandGroup:
        self.data = await self._commands._client.get(f"commands/groups/{self.id}")
        return self

    async def wait(self, timeout: float | None = 60.0) -> AsyncCommandGroup:
        """Wait until every command of the group has ended; `CommandTimeoutError` after
        `timeout` seconds."""
        self.data = await self._commands._waited(f"commands/groups/{self.id}", timeout, self.done)
        if not self.done:
            raise CommandTimeoutError(
                f"{self.total - sum(self.counts.get(s, 0) for s in FINAL)} of {self.total} "
                f"commands {self.id} have not ended after {timeout} s",
                self,
            )
        return self

    async def watch(self, timeout: float | None = None) -> AsyncIterator[AsyncCommandGroup]:
        """The group each time its counts change, live, until every command ended (or
        `timeout` seconds passed)."""
        waited = 0.0
        yield self
        while not self.done and (timeout is None or waited < timeout):
            ask = LONG_POLL if timeout is None else max(0.0, min(LONG_POLL, timeout - waited))
            before = self.counts
            started = time.monotonic()
            self.data = await self._commands._client.get(
                f"commands/groups/{self.id}", {"wait": ask}, timeout=ask + 30
            )
            waited += time.monotonic() - started
            if self.counts != before:
                yield self

    async def commands(self, state: str | None = None) -> list[AsyncCommand]:
        """The group's commands (all of them, newest first), optionally in one state."""
        return await self._commands.list(group=self.id, state=state, limit=None)

    def __repr__(self) -> str:
        return f"<CommandGroup {self.name} {self.id} {self.counts}>"


class AsyncCommands:
    """Commands through one client: `send`, `send_many`, `get`, `list` for people and apps;
    `on(name)` handlers, `start()` and `poll()` for a device."""

    def __init__(self, client: AsyncClient, inbox: str | os.PathLike[str] | None = None) -> None:
        self._client = client
        self._inbox_path = inbox
        self._inbox: Inbox | None = None
        self._handlers: dict[str, Handler] = {}
        self._worker: _AsyncWorker | None = None
        self._copies: set[str] = set()
        self._socket = False
        self._ran = 0

    # -- people and apps

    async def send(
        self,
        device: Any,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        ttl: float | None = None,
        timeout: float | None = None,
    ) -> AsyncCommand:
        """Queue a command for one device (an id or a `Device`). `ttl`: seconds it may wait
        for the device (default a day, at most 30); `timeout`: seconds the device has to
        answer once it has it (default 300). The same `idempotency_key` within 24 hours
        gives back the same command."""
        body = _body(name, payload, idempotency_key, ttl, timeout)
        return AsyncCommand(
            self, await self._client.post(f"devices/{_id_of(device)}/commands", body)
        )

    async def send_many(
        self,
        name: str,
        payload: Any = None,
        *,
        devices: list[Any] | None = None,
        where: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        ttl: float | None = None,
        timeout: float | None = None,
    ) -> AsyncCommandGroup:
        """Queue a command for many devices: `devices` (ids or `Device`s), or `where`, the
        device list's filters (`{"location_id": ..., "online": True, "document": {"subtype":
        "kiosk"}, "installed": {"firmware": "2.1"}}`). Follow it with the group's `watch()` or
        `wait()`."""
        if (devices is None) == (where is None):
            raise ConfigurationError("Give devices or where (one of them).")
        body = _body(name, payload, idempotency_key, ttl, timeout)
        if devices is not None:
            body["device_ids"] = [_id_of(d) for d in devices]
        else:
            body["filter"] = where
        return AsyncCommandGroup(self, await self._client.post("commands", body))

    async def get(self, id: str) -> AsyncCommand:
        return AsyncCommand(self, await self._client.get(f"commands/{id}"))

    async def group(self, id: str) -> AsyncCommandGroup:
        return AsyncCommandGroup(self, await self._client.get(f"commands/groups/{id}"))

    async def list(
        self,
        *,
        state: str | None = None,
        device: Any = None,
        group: str | None = None,
        name: str | None = None,
        limit: int | None = 100,
    ) -> list[AsyncCommand]:
        """Commands, newest first: in one `state` ("open": not ended yet), of one device, of
        one group, of one name; at most `limit` (None: all)."""
        given = {"state": state, "device_id": device and _id_of(device), "group_id": group}
        query = {k: v for k, v in (given | {"name": name}).items() if v is not None}
        found: list[AsyncCommand] = []
        page: dict[str, Any] | None = await self._client.get("commands", query)
        while page is not None:
            found += [AsyncCommand(self, item) for item in page.get("results", [])]
            if limit is not None and len(found) >= limit:
                return found[:limit]
            page = await self._client.get(page["next"]) if page.get("next") else None
        return found

    async def _waited(self, path: str, timeout: float | None, done: bool) -> dict[str, Any]:
        """The object at `path` after long polls until it is done or `timeout` passes."""
        clock = time.monotonic
        deadline = None if timeout is None else clock() + timeout
        while True:
            left = LONG_POLL if deadline is None else max(0.0, deadline - clock())
            ask = min(LONG_POLL, left)
            data: dict[str, Any] = await self._client.get(path, {"wait": ask}, timeout=ask + 30)
            state_done = data.get("done") if "done" in data else data.get("state") in FINAL
            if state_done or (deadline is not None and clock() >= deadline):
                return data

    # -- devices

    def on(self, name: str, handler: Handler | None = None) -> Any:
        """Run `handler(command)` for commands called `name` ("*": any other name). Its return
        value is the result; raising `CommandRejected` rejects it, any other exception fails
        it. Use as `commands.on("reboot", fn)` or as a decorator, `@commands.on("reboot")`."""

        def register(function: Handler) -> Handler:
            self._handlers[name] = function
            return function

        return register if handler is None else register(handler)

    def inbox(self) -> Inbox:
        """The device's inbox on disk: the outbox file of its telemetry unless given."""
        if self._inbox is None:
            credentials = self._client.credentials
            own = credentials.device_id if credentials.kind == "device" else None
            if own is None:
                raise ConfigurationError("Only a device runs commands: use device credentials.")
            self._inbox = Inbox(self._inbox_path or default_outbox_path(own))
        return self._inbox

    async def start(self, timeout: float = 10) -> None:
        """Take commands on the client's realtime socket: everything still queued now, then
        each one as it is sent; run them in the background until `stop()` (or the client
        closes). Resumes whatever the inbox held: answers not yet reported, commands not yet
        acknowledged."""
        self.inbox()
        self._socket = True
        await self._client.realtime.take(
            "command", lambda frame: self._received(frame["command"]), _commands_frame, timeout
        )
        self._ensure_worker()

    async def poll(self) -> int:
        """For a device without a socket: fetch its open commands over HTTP, run them and
        report their answers; how many ran."""
        self.inbox()
        device_id = self._client.credentials.device_id
        page = await self._client.get(f"devices/{device_id}/commands", {"state": "open"})
        for item in page.get("results", []):
            self._received(item)
        ran = 0
        while True:
            delay = await self._step()
            ran += self._ran
            if delay > 0:
                return ran

    async def stop(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.stop()
        if self._inbox is not None:
            self._inbox.close()
            self._inbox = None

    def _ensure_worker(self) -> None:
        if self._worker is None:
            self._worker = _AsyncWorker(self._step)
            self._worker.start()

    def _received(self, command: dict[str, Any]) -> None:
        """A command from the server: kept before anything else; a copy is acknowledged again
        (the server may not have had the first acknowledgement), never run again."""
        if not self.inbox().receive(command):
            self._copies.add(str(command["id"]))
        if self._worker is not None:
            self._worker.wake()

    async def _step(self) -> float:
        """One round of the device's work: report answers, acknowledge what arrived, run the
        oldest delivered command. The seconds to wait before the next round."""
        self._ran = 0
        inbox = self.inbox()
        try:
            for answer in inbox.unreported():
                await self._report(answer)
                inbox.reported(answer.id)
            for command_id in inbox.unacknowledged():
                inbox.acknowledged(command_id, await self._acknowledge(command_id))
            while self._copies:
                await self._acknowledge(self._copies.pop())
        except TetherError as exc:
            logger.info("commands: the server is away (%s); trying again", exc)
            return RETRY
        command = inbox.next_to_run()
        if command is None:
            return IDLE
        if inbox.start(command.id):
            self._ran = 1
            await self._run(command)
        return 0.0

    async def _run(self, command: ReceivedCommand) -> None:
        """Run the handler, and wait for it no longer than the command's timeout."""
        inbox = self.inbox()
        handler = self._handlers.get(command.name) or self._handlers.get("*")
        command._report = self._progress

        async def execute() -> None:
            try:
                if handler is None:
                    raise ConfigurationError(f"no handler for {command.name!r} on this device")
                answer = answer_of(command.id, await _async_call(handler, command))
            except Exception as exc:
                answer = answer_of(command.id, error=exc)
            inbox.finish(answer)
            if self._worker is not None:
                self._worker.wake()

        if not await _async_join(_async_start(execute), command.timeout):
            logger.warning(
                "command %s (%s) outlived its %.0f s timeout; running the next one",
                command.id,
                command.name,
                command.timeout,
            )

    async def _tell(self, what: str, command_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Say something about a command: over the socket when it is open, else over HTTP.
        The command as it now stands."""
        realtime = self._client._realtime
        if self._socket and realtime is not None and realtime.is_connected:
            try:
                frame = {"op": f"command_{what}", "command": command_id, **body}
                reply = await realtime.request(frame, 30)
                return dict(reply["command"])
            except RealtimeError as exc:
                if exc.code == "not_found":
                    raise NotFoundError(str(exc), status=404, code="not_found") from exc
                raise
            except TetherError:
                logger.info("commands: the socket failed; telling the server over HTTP")
        return dict(await self._client.post(f"commands/{command_id}/{what}", body))

    async def _acknowledge(self, command_id: str) -> str:
        """Acknowledge a stored command; the state the server says it is in."""
        try:
            return str((await self._tell("ack", command_id, {}))["state"])
        except NotFoundError:
            return "canceled"

    async def _report(self, answer: Answer) -> None:
        body = {"state": answer.state, "result": answer.result, "error": answer.error}
        try:
            await self._tell("result", answer.id, body)
        except NotFoundError:
            logger.warning("command %s is gone from the server; its answer is dropped", answer.id)

    async def _progress(self, command_id: str, value: Any) -> None:
        try:
            await self._tell("progress", command_id, {"progress": value})
        except TetherError as exc:
            logger.info("commands: progress of %s not reported (%s)", command_id, exc)


def _commands_frame() -> dict[str, Any]:
    return {"op": "commands"}


def _body(
    name: str, payload: Any, key: str | None, ttl: float | None, timeout: float | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "payload": payload}
    for field, value in (("idempotency_key", key), ("ttl", ttl), ("timeout", timeout)):
        if value is not None:
            body[field] = value
    return body
