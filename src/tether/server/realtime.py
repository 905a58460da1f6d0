"""Realtime: one WebSocket per client, channels scoped to the organization, broadcasts that
collect the subscribers' responses, and resource events from the event bus.

Frames are JSON objects with an `op`. From the client:

    {"op": "subscribe",   "id": 1, "channel": "lobby", "system": false, "consumer": false}
    {"op": "unsubscribe", "id": 2, "channel": "lobby"}
    {"op": "broadcast",   "id": 3, "channel": "lobby", "name": "ping", "payload": {...},
                          "timeout": 0.5}
    {"op": "respond",     "broadcast": "<id>", "payload": {...}}
    {"op": "events",      "id": 4, "types": ["device:created", "telemetry:*"]}

From the server: `ack` (with the request's id), `error` (id, code, message: the socket stays
open), `broadcast` (channel, name, payload, broadcast id, sent_at), `responses` (id, list) when a
broadcast's time is up or everyone answered, and `event` (type, action, id, document).

This is the in-process hub of one server; several processes share channels through Redis in a
later step, behind the same `Hub` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from tether.server.credentials import Principal
from tether.server.events import Event
from tether.server.state import ServerState

logger = logging.getLogger("tether.server")

MAX_FRAME = 64 * 1024
QUEUE = 1000
MAX_TIMEOUT = 30.0
SLOW_CONSUMER = 4008

ChannelKey = tuple[str, str, bool, bool]


class Frame(msgspec.Struct, omit_defaults=True):
    op: str
    id: int | str | None = None
    channel: str | None = None
    system: bool = False
    consumer: bool = False
    name: str | None = None
    payload: Any = None
    timeout: float = 0.1
    broadcast: str | None = None
    types: list[str] | None = None


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class Client:
    """One connected socket: who it is, what it listens to, and its bounded outbox."""

    principal: Principal
    outbox: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE))
    channels: set[ChannelKey] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    too_slow: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, frame: dict[str, Any]) -> bool:
        """Queue a frame; a client whose queue is full is marked to be disconnected."""
        try:
            self.outbox.put_nowait(msgspec.json.encode(frame))
            return True
        except asyncio.QueueFull:
            self.too_slow.set()
            return False

    def wants(self, event: Event) -> bool:
        return (
            bool(self.events & {"*", event.name, f"{event.type}:*", f"*:{event.action}"})
            and event.org_id == self.principal.org_id
        )


@dataclass
class _Pending:
    org_id: str
    expected: int
    responses: list[Any] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Hub:
    """Channels and pending broadcasts of this process."""

    def __init__(self) -> None:
        self._channels: dict[ChannelKey, set[Client]] = {}
        self._pending: dict[str, _Pending] = {}
        self.clients: set[Client] = set()

    def subscribe(self, client: Client, key: ChannelKey) -> None:
        self._channels.setdefault(key, set()).add(client)
        client.channels.add(key)

    def unsubscribe(self, client: Client, key: ChannelKey) -> None:
        members = self._channels.get(key)
        if members is not None:
            members.discard(client)
            if not members:
                del self._channels[key]
        client.channels.discard(key)

    def leave(self, client: Client) -> None:
        for key in list(client.channels):
            self.unsubscribe(client, key)
        self.clients.discard(client)

    async def broadcast(
        self, key: ChannelKey, name: str, payload: Any, timeout: float
    ) -> list[Any]:
        """Deliver to every subscriber of `key`; return the responses that arrive within
        `timeout` seconds (sooner when every subscriber has answered)."""
        broadcast_id = uuid.uuid4().hex
        members = list(self._channels.get(key, ()))
        pending = _Pending(key[0], expected=len(members))
        self._pending[broadcast_id] = pending
        frame = {
            "op": "broadcast",
            "channel": key[1],
            "system": key[2],
            "consumer": key[3],
            "name": name,
            "payload": payload,
            "broadcast": broadcast_id,
            "sent_at": time.time(),
        }
        delivered = sum(client.offer(frame) for client in members)
        pending.expected = delivered
        try:
            if delivered:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pending.done.wait(), timeout)
            return list(pending.responses)
        finally:
            del self._pending[broadcast_id]

    def respond(self, org_id: str, broadcast_id: str, payload: Any) -> None:
        pending = self._pending.get(broadcast_id)
        if pending is None or pending.org_id != org_id:
            return
        pending.responses.append(payload)
        if len(pending.responses) >= pending.expected:
            pending.done.set()

    def publish(self, event: Event) -> None:
        frame = {
            "op": "event",
            "type": event.type,
            "action": event.action,
            "id": event.id,
            "document": event.document,
        }
        for client in list(self.clients):
            if client.wants(event):
                client.offer(frame)


async def forward_events(state: ServerState, hub: Hub) -> None:
    """Carry every event of the bus to the sockets that asked for it."""
    async with state.bus.subscribe() as queue:
        while True:
            hub.publish(await queue.get())


def _channel_key(client: Client, frame: Frame) -> ChannelKey:
    name = frame.channel
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise FrameError("invalid", "channel must be a name of 1 to 200 characters")
    return (client.principal.org_id, name, frame.system, frame.consumer)


async def _handle(hub: Hub, client: Client, frame: Frame) -> dict[str, Any] | None:
    if frame.op == "subscribe":
        hub.subscribe(client, _channel_key(client, frame))
        return {"op": "ack", "id": frame.id}
    if frame.op == "unsubscribe":
        hub.unsubscribe(client, _channel_key(client, frame))
        return {"op": "ack", "id": frame.id}
    if frame.op == "broadcast":
        if client.principal.read_only:
            raise FrameError("read_only", "This credential is read-only: it cannot broadcast.")
        if not isinstance(frame.name, str) or not frame.name:
            raise FrameError("invalid", "a broadcast needs a name")
        if not 0 <= frame.timeout <= MAX_TIMEOUT:
            raise FrameError("invalid", f"timeout must be 0 to {MAX_TIMEOUT} seconds")
        key = _channel_key(client, frame)
        responses = await hub.broadcast(key, frame.name, frame.payload, frame.timeout)
        return {"op": "responses", "id": frame.id, "responses": responses}
    if frame.op == "respond":
        if not frame.broadcast:
            raise FrameError("invalid", "respond needs the broadcast id")
        hub.respond(client.principal.org_id, frame.broadcast, frame.payload)
        return None
    if frame.op == "events":
        client.events = set(frame.types or [])
        return {"op": "ack", "id": frame.id}
    raise FrameError("unknown_op", f"unknown op {frame.op!r}")


async def _send_loop(socket: WebSocket[Any, Any, Any], client: Client) -> None:
    while True:
        await socket.send_text((await client.outbox.get()).decode())


async def _run(socket: WebSocket[Any, Any, Any], hub: Hub, client: Client, frame: Frame) -> None:
    try:
        reply = await _handle(hub, client, frame)
    except FrameError as exc:
        reply = {"op": "error", "id": frame.id, "code": exc.code, "message": exc.message}
    if reply is not None:
        client.offer(reply)


@websocket("/realtime")
async def realtime(socket: WebSocket[Any, Any, Any]) -> None:
    hub: Hub = socket.app.state.hub
    client = Client(principal=socket.user)
    await socket.accept()
    hub.clients.add(client)
    sender = asyncio.create_task(_send_loop(socket, client))
    watchdog = asyncio.create_task(client.too_slow.wait())
    work: set[asyncio.Task[None]] = set()
    try:
        while True:
            receive = asyncio.create_task(socket.receive_text())
            done, _ = await asyncio.wait(
                {receive, watchdog, sender}, return_when=asyncio.FIRST_COMPLETED
            )
            if receive not in done:
                receive.cancel()
                if watchdog in done:
                    await socket.close(SLOW_CONSUMER, "too slow: messages were piling up")
                return
            text = receive.result()
            if len(text) > MAX_FRAME:
                too_large = f"frames are at most {MAX_FRAME} bytes"
                client.offer({"op": "error", "code": "too_large", "message": too_large})
                continue
            try:
                frame = msgspec.json.decode(text, type=Frame)
            except msgspec.DecodeError as exc:
                client.offer({"op": "error", "code": "malformed", "message": str(exc)})
                continue
            task = asyncio.create_task(_run(socket, hub, client, frame))
            work.add(task)
            task.add_done_callback(work.discard)
    except WebSocketDisconnect:
        return
    finally:
        hub.leave(client)
        for pending in (sender, watchdog, *work):
            pending.cancel()
