"""Realtime: one WebSocket per client, channels scoped to the organization, broadcasts that
collect the subscribers' responses, and resource events from the event bus.

Frames are JSON objects with an `op`. From the client:

    {"op": "subscribe",   "id": 1, "channel": "lobby", "system": false, "consumer": false,
                          "presence": false}
    {"op": "unsubscribe", "id": 2, "channel": "lobby"}
    {"op": "broadcast",   "id": 3, "channel": "lobby", "name": "ping", "payload": {...},
                          "timeout": 0.5}
    {"op": "respond",     "broadcast": "<id>", "payload": {...}}
    {"op": "events",      "id": 4, "types": ["device:created", "telemetry:*"]}
    {"op": "who",         "id": 5, "channel": "lobby"}

From the server: `ack` (with the request's id), `error` (id, code, message: the socket stays
open), `broadcast` (channel, name, payload, broadcast id, sent_at, timeout), `responses` (id,
the payloads as `responses` and, in `answers`, each with `from`: who gave it) when a
broadcast's time is up or everyone answered, `event` (type, action, id, document), `members`
(the answer to `who`: type, id and name of each identity subscribed) and `presence` (channel
and `joined` or `left` with a member) as others come and go, to the subscribers that asked for
it with `"presence": true` (sent to everyone, a thousand joins would be half a million frames).

A broadcast's id is unguessable, and only a socket it was delivered to may answer it, once,
until its timeout: the node that delivered it keeps who got it (`_Asked`), so no other socket of
the organization can slip in an answer.

One process keeps its sockets' channels in a `Hub`; its `Backplane`
(`tether.server.realtime.backplane`) carries broadcasts, delivery counts, responses, presence
and events between processes: none on one process, Redis pub/sub with `TETHER_REDIS_URL`.
While the backplane cannot reach the other nodes, a broadcast or `who` gets an `unavailable`
error frame at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.types import WebSocketSendEvent

from tether.server.identity.credentials import Principal
from tether.server.identity.policy import allow, decide, may_hear
from tether.server.identity.scope import resolve_scope, scoped_paths
from tether.server.inputs import decode_json
from tether.server.problems import Problem
from tether.server.realtime.backplane import (
    Backplane,
    BackplaneDown,
    ChannelKey,
    LocalBackplane,
    Member,
)
from tether.server.realtime.events import Event
from tether.server.realtime.frames import Frame, FrameError, Operation
from tether.server.realtime.stepped import DONE, Steps, finish, step

MAX_FRAME = 64 * 1024
QUEUE = 1000
MAX_TIMEOUT = 30.0
MAX_CHANNELS = 100
"""Channels one socket may be subscribed to at once."""
SLOW_CONSUMER = 4008
REVOKED = 4001
"""Close code of a socket whose credential was revoked (token revoked, principal deleted,
password changed, secret rotated, logged out)."""
CLOSE_TIMEOUT = 5.0
REALTIME_PATH = "/api/v1/realtime"


Send = Callable[[WebSocketSendEvent], Awaitable[None]]


@dataclass(eq=False)
class Client:
    """One connected socket: who it is, what it listens to, and its bounded outbox.

    A frame is written at once when nothing is waiting to go out before it (see `stepped`); only
    when the socket's transport is full do frames queue, up to `QUEUE`, behind a task that
    writes them as the socket drains."""

    principal: Principal
    send: Send
    outbox: deque[str] = field(default_factory=deque)
    channels: set[ChannelKey] = field(default_factory=set)
    watching: set[ChannelKey] = field(default_factory=set)
    """The channels whose presence changes this socket asked to hear about."""
    events: set[str] = field(default_factory=set)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the socket cannot keep up (`too_slow`), its credential was revoked
    (`revoked`) or a write to it failed."""
    too_slow: bool = False
    revoked: bool = False
    takes: set[str] = field(default_factory=set)
    """What an area delivers to this socket on its own once asked (`commands`, `twin`)."""
    _flushing: asyncio.Task[None] | None = None

    @property
    def space(self) -> str:
        """The namespace of this socket's channels: its organization's, or a project's own
        when the socket was opened under `/projects/{id}/realtime`."""
        project_id = self.principal.project_id
        return f"{self.principal.org_id}/{project_id}" if project_id else self.principal.org_id

    @property
    def path(self) -> str:
        """The URL the policy's project narrowing sees this socket at."""
        project_id = self.principal.project_id
        return f"/api/v1/projects/{project_id}/realtime" if project_id else REALTIME_PATH

    @property
    def member(self) -> dict[str, str]:
        """How this socket appears in a channel's presence."""
        return {"type": self.principal.type, "id": self.principal.id, "name": self.principal.name}

    def offer(self, frame: dict[str, Any] | str) -> bool:
        """Send a frame (or its JSON text, made once for many sockets), or queue it behind
        those still waiting; a client whose queue is full is marked to be disconnected."""
        if self.gone.is_set():
            return False
        text = frame if isinstance(frame, str) else _text(frame)
        if self._flushing is not None:
            if len(self.outbox) >= QUEUE:
                self.too_slow = True
                self.gone.set()
                return False
            self.outbox.append(text)
            return True
        send = self.send(_message(text)).__await__()
        try:
            waiting = step(send)
        except Exception:
            self.gone.set()
            return False
        if waiting is not DONE:
            self._flushing = asyncio.get_running_loop().create_task(self._flush(send, waiting))
        return True

    async def _flush(self, send: Steps, waiting: Any) -> None:
        try:
            await finish(send, waiting)
            while self.outbox:
                await self.send(_message(self.outbox.popleft()))
        except Exception:
            self.gone.set()
        finally:
            self._flushing = None

    def close(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()

    def wants(self, event: Event) -> bool:
        """Whether this socket asked for `event` and its principal may read what it is about."""
        return (
            bool(self.events & {"*", event.name, f"{event.type}:*", f"*:{event.action}"})
            and event.org_id == self.principal.org_id
            and may_hear(self.principal, event.type, event.id, event.document)
        )

    def revoke(self) -> None:
        self.revoked = True
        self.gone.set()


ANSWER_GRACE = 1.0
"""Seconds past its timeout that a broadcast still takes answers in flight (they reach a
broadcaster that stopped waiting, and are dropped there)."""


@dataclass
class _Asked:
    """The sockets of this node a broadcast was delivered to and that have not answered."""

    clients: set[Client]
    expires: float


@dataclass
class _Pending:
    """A broadcast waiting for answers: how many sockets got it, on which nodes, and what
    came back. Done when every node has said how many it reached and that many answered."""

    space: str
    """The channel namespace the broadcast went out in (`Client.space`): only answers from
    there count."""
    nodes: set[str]
    delivered: dict[str, int] = field(default_factory=dict)
    responses: list[Any] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if self.nodes <= self.delivered.keys() and len(self.responses) >= sum(
            self.delivered.values()
        ):
            self.done.set()


class Hub:
    """Channels and pending broadcasts of this process; its `backplane` carries broadcasts
    and responses to and from the other server processes, if any."""

    def __init__(self, node: str | None = None) -> None:
        self.node = node or uuid.uuid4().hex[:12]
        self._channels: dict[ChannelKey, set[Client]] = {}
        self._pending: dict[str, _Pending] = {}
        self._asked: dict[str, _Asked] = {}
        self._expiring: list[tuple[float, str]] = []
        self.clients: set[Client] = set()
        self.backplane: Backplane = LocalBackplane()
        self.hearing: list[Callable[[Event], None]] = []
        """Called with each event another server process published (to drop what this one
        keeps of the object, say)."""
        self.operations: dict[str, Operation] = {}
        """Frames an area answers (`commands`: ack, progress, result...), by their op: how
        every area reaches the sockets without the hub knowing the area."""
        self._principals: dict[str, set[Client]] = {}
        self._listening: set[Client] = set()
        """The sockets that asked for resource events: the only ones `publish` looks at, so a
        fleet of device sockets costs an event nothing."""

    def listen(self, client: Client, types: set[str]) -> None:
        client.events = types
        if types:
            self._listening.add(client)
        else:
            self._listening.discard(client)

    def join(self, client: Client) -> None:
        self.clients.add(client)
        self._principals.setdefault(client.principal.id, set()).add(client)

    def sockets_of(self, principal_id: str) -> set[Client]:
        """The sockets of one principal (a device, say) open on this process."""
        return self._principals.get(principal_id, set())

    def connected(self, kind: str) -> list[str]:
        """The ids of the principals of `kind` (device, user...) with a socket open here."""
        return [c.principal.id for c in self.clients if c.principal.type == kind]

    def heard(self, event: Event) -> None:
        """An event from another server process: to this process's sockets and listeners."""
        self.publish(event)
        for listener in self.hearing:
            listener(event)

    def subscriptions(self) -> list[tuple[ChannelKey, Member]]:
        """Every (channel, subscriber) pair of this process."""
        return [(key, client) for key, members in self._channels.items() for client in members]

    def subscribe(self, client: Client, key: ChannelKey, presence: bool = False) -> None:
        if presence:
            client.watching.add(key)
        if key in client.channels:
            return
        if len(client.channels) >= MAX_CHANNELS:
            raise FrameError(
                "too_many_channels",
                f"A socket may be subscribed to at most {MAX_CHANNELS} channels; unsubscribe "
                "from one first, or open another socket.",
            )
        self._channels.setdefault(key, set()).add(client)
        client.channels.add(key)
        self._presence(key, client, "joined")

    def unsubscribe(self, client: Client, key: ChannelKey) -> None:
        members = self._channels.get(key)
        if members is None or client not in members:
            return
        members.discard(client)
        if not members:
            del self._channels[key]
        client.channels.discard(key)
        client.watching.discard(key)
        self._presence(key, client, "left")

    def leave(self, client: Client) -> None:
        for key in list(client.channels):
            self.unsubscribe(client, key)
        self.clients.discard(client)
        self._listening.discard(client)
        own = self._principals.get(client.principal.id)
        if own is not None:
            own.discard(client)
            if not own:
                del self._principals[client.principal.id]

    def members(self, key: ChannelKey) -> list[dict[str, Any]]:
        """Who is subscribed to `key` on this node, once per identity."""
        seen = {(c.principal.type, c.principal.id): c.member for c in self._channels.get(key, ())}
        return list(seen.values())

    def _presence(self, key: ChannelKey, client: Client, change: str) -> None:
        frame = {
            "op": "presence",
            "channel": key[1],
            "system": key[2],
            "consumer": key[3],
            change: client.member,
        }
        self.tell_watchers(key, frame, skip=client)
        self.backplane.presence(key, frame, client, change)

    def tell_watchers(
        self, key: ChannelKey, frame: dict[str, Any], skip: Client | None = None
    ) -> None:
        """Hand a presence change to this process's subscribers of `key` that asked for them."""
        encoded = _text(frame)
        for client in list(self._channels.get(key, ())):
            if client is not skip and key in client.watching:
                client.offer(encoded)

    def deliver_broadcast(self, key: ChannelKey, frame: dict[str, Any]) -> int:
        """Hand a broadcast to this process's subscribers of `key`, and keep who got it (until
        its timeout) as the only sockets that may answer it; how many took it."""
        now = time.monotonic()
        while self._expiring and self._expiring[0][0] <= now:
            self._asked.pop(heapq.heappop(self._expiring)[1], None)
        encoded = _text(frame)
        taken = {client for client in list(self._channels.get(key, ())) if client.offer(encoded)}
        if taken:
            expires = now + float(frame["timeout"]) + ANSWER_GRACE
            self._asked[frame["broadcast"]] = _Asked(taken, expires)
            heapq.heappush(self._expiring, (expires, frame["broadcast"]))
        return len(taken)

    async def broadcast(
        self, key: ChannelKey, name: str, payload: Any, timeout: float
    ) -> list[dict[str, Any]]:
        """Deliver to every subscriber of `key` (on every node); return the answers (who gave
        each, and its payload) that arrive within `timeout` seconds, sooner when every
        subscriber has answered."""
        broadcast_id = f"{self.node}.{secrets.token_urlsafe(16)}"
        nodes = await self.backplane.nodes()
        pending = _Pending(key[0], nodes | {self.node})
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
            "timeout": timeout,
        }
        try:
            await self.backplane.broadcast(key, frame)
            self.delivered(broadcast_id, self.node, self.deliver_broadcast(key, frame))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await pending.done.wait()
            return list(pending.responses)
        finally:
            del self._pending[broadcast_id]

    def delivered(self, broadcast_id: str, node: str, count: int) -> None:
        pending = self._pending.get(broadcast_id)
        if pending is not None:
            pending.delivered[node] = count
            pending.check()

    def respond(self, client: Client, broadcast_id: str, payload: Any) -> bool:
        """A socket's answer to a broadcast: carried to the broadcaster with who gave it, if
        the broadcast was delivered to this socket and it has not answered yet."""
        asked = self._asked.get(broadcast_id)
        if asked is None or client not in asked.clients:
            return False
        asked.clients.discard(client)
        if not asked.clients:
            del self._asked[broadcast_id]
        answer = {"from": client.member, "payload": payload}
        origin = broadcast_id.split(".", 1)[0]
        if origin == self.node:
            self.answered(client.space, broadcast_id, answer)
        else:
            self.backplane.respond(origin, client.space, broadcast_id, answer)
        return True

    def answered(self, space: str, broadcast_id: str, answer: dict[str, Any]) -> None:
        """An answer to one of this node's broadcasts, checked where it was given."""
        pending = self._pending.get(broadcast_id)
        if pending is None or pending.space != space:
            return
        pending.responses.append(answer)
        pending.check()

    def revoked(self, subject: str, when: float) -> None:
        """Close the sockets whose credential a revocation of `subject` at `when` covers."""
        for client in list(self.clients):
            principal = client.principal
            if (
                subject in (principal.id, principal.token_id, principal.session_id)
                and principal.issued_at <= when
            ):
                client.revoke()

    def publish(self, event: Event) -> None:
        frame = {
            "op": "event",
            "type": event.type,
            "action": event.action,
            "id": event.id,
            "document": event.document,
        }
        encoded = None
        for client in list(self._listening):
            if client.wants(event):
                encoded = encoded or _text(frame)
                client.offer(encoded)


def _text(frame: dict[str, Any]) -> str:
    """A frame as the text of a WebSocket message."""
    return msgspec.json.encode(frame).decode()


def _message(text: str) -> WebSocketSendEvent:
    """The ASGI event that sends `text` as one WebSocket message."""
    return {"type": "websocket.send", "text": text, "bytes": None}


def _channel_key(client: Client, frame: Frame) -> ChannelKey:
    name = frame.channel
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise FrameError("invalid", "channel must be a name of 1 to 200 characters")
    return (client.space, name, frame.system, frame.consumer)


def decode_frame(text: str) -> Frame:
    """A client's frame, by the same input rules as HTTP bodies (depth, NUL-free text)."""
    try:
        frame: Frame = decode_json(text.encode(), "The frame", Frame)
    except Problem as exc:
        raise FrameError(exc.code, exc.detail) from None
    return frame


def _handle(hub: Hub, client: Client, frame: Frame) -> dict[str, Any] | None:
    """Answer a frame that needs no waiting; broadcasts and `who` go to `_answer`."""
    if frame.op == "subscribe":
        hub.subscribe(client, _channel_key(client, frame), frame.presence)
        return {"op": "ack", "id": frame.id}
    if frame.op == "unsubscribe":
        hub.unsubscribe(client, _channel_key(client, frame))
        return {"op": "ack", "id": frame.id}
    if frame.op == "respond":
        _permit(client, "broadcast")
        if not frame.broadcast:
            raise FrameError("invalid", "respond needs the broadcast id")
        if not hub.respond(client, frame.broadcast, frame.payload):
            raise FrameError(
                "not_asked",
                "That broadcast was not delivered to this socket, was answered already, or its "
                "time is up.",
            )
        return None
    if frame.op == "events":
        hub.listen(client, set(frame.types or []))
        return {"op": "ack", "id": frame.id}
    raise FrameError("unknown_op", f"unknown op {frame.op!r}")


async def _answer(hub: Hub, client: Client, frame: Frame) -> dict[str, Any]:
    """Answer a frame whose reply takes time: a broadcast's responses, a channel's members."""
    if frame.op == "broadcast":
        _permit(client, "system" if frame.system else "broadcast")
        if not isinstance(frame.name, str) or not frame.name:
            raise FrameError("invalid", "a broadcast needs a name")
        if not 0 <= frame.timeout <= MAX_TIMEOUT:
            raise FrameError("invalid", f"timeout must be 0 to {MAX_TIMEOUT} seconds")
        key = _channel_key(client, frame)
        try:
            answers = await hub.broadcast(key, frame.name, frame.payload, frame.timeout)
        except BackplaneDown as exc:
            raise _unavailable(exc) from None
        responses = [answer["payload"] for answer in answers]
        return {"op": "responses", "id": frame.id, "responses": responses, "answers": answers}
    key = _channel_key(client, frame)
    try:
        members = await hub.backplane.members(key, hub.members(key))
    except BackplaneDown as exc:
        raise _unavailable(exc) from None
    return {"op": "members", "id": frame.id, "members": members}


def _unavailable(exc: BackplaneDown) -> FrameError:
    return FrameError(
        "unavailable",
        f"Realtime cannot reach the other server nodes now ({exc.reason}); try again shortly.",
    )


def _permit(client: Client, action: str) -> None:
    """The policy's word on a channel operation, as an error frame when it says no."""
    try:
        decide(client.principal, "channel", action, path=client.path)
    except Problem as exc:
        raise FrameError(exc.code, exc.detail) from None


def _error(frame: Frame, exc: FrameError) -> dict[str, Any]:
    return {"op": "error", "id": frame.id, "code": exc.code, "message": exc.message}


async def _answer_later(hub: Hub, client: Client, frame: Frame) -> None:
    operation = hub.operations.get(frame.op)
    try:
        reply = await (
            _answer(hub, client, frame) if operation is None else operation(client, frame)
        )
    except FrameError as exc:
        reply = _error(frame, exc)
    except Problem as exc:
        reply = _error(frame, FrameError(exc.code, exc.detail))
    if reply is not None:
        client.offer(reply)


async def _read_loop(socket: WebSocket[Any, Any, Any], hub: Hub, client: Client) -> None:
    """Read and act on the client's frames until it goes away. Frames are read here, one
    after the other; only those that wait (broadcast, who) get a task of their own."""
    work: set[asyncio.Task[None]] = set()
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") if message["type"] == "websocket.receive" else None
            if not isinstance(text, str):
                client.offer({"op": "error", "code": "malformed", "message": "frames are text"})
                continue
            if len(text) > MAX_FRAME:
                too_large = f"frames are at most {MAX_FRAME} bytes"
                client.offer({"op": "error", "code": "too_large", "message": too_large})
                continue
            try:
                frame = decode_frame(text)
            except FrameError as exc:
                client.offer({"op": "error", "code": exc.code, "message": exc.message})
                continue
            if frame.op in ("broadcast", "who") or frame.op in hub.operations:
                task = asyncio.create_task(_answer_later(hub, client, frame))
                work.add(task)
                task.add_done_callback(work.discard)
                continue
            try:
                reply = _handle(hub, client, frame)
            except FrameError as exc:
                reply = _error(frame, exc)
            if reply is not None:
                client.offer(reply)
    finally:
        for task in list(work):
            task.cancel()


def _ending(client: Client) -> tuple[int, str] | None:
    """The close code and reason the server ends a socket with, when it is the one ending it."""
    if client.revoked:
        return REVOKED, "credential revoked"
    if client.too_slow:
        return SLOW_CONSUMER, "too slow: messages were piling up"
    return None


@websocket(scoped_paths("/realtime"), opt=allow("channel", "listen"))
async def realtime(socket: WebSocket[Any, Any, Any]) -> None:
    """The realtime socket. Under `/projects/{id}/realtime` it is the project's: its
    channels are the project's own and it hears only the project's events, whoever opened it."""
    tether = socket.app.state.tether
    hub: Hub = tether.hub
    principal: Principal = socket.user
    async with tether.reader.connect() as reads:
        _, project_id = await resolve_scope(reads, socket)
    if project_id is not None:
        principal = dataclasses.replace(principal, project_id=project_id)
    client = Client(principal=principal, send=socket.send)
    await socket.accept()
    hub.join(client)
    reader = asyncio.create_task(_read_loop(socket, hub, client))
    gone = asyncio.create_task(client.gone.wait())
    try:
        await asyncio.wait({reader, gone}, return_when=asyncio.FIRST_COMPLETED)
        ending = _ending(client)
        if ending is not None:
            hub.leave(client)
            reader.cancel()
            client.close()
            with contextlib.suppress(TimeoutError, WebSocketDisconnect):
                await asyncio.wait_for(socket.close(*ending), CLOSE_TIMEOUT)
    finally:
        hub.leave(client)
        client.close()
        for task in (reader, gone):
            task.cancel()
        await asyncio.gather(reader, gone, return_exceptions=True)
