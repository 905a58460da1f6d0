"""The Redis backplane: broadcasts, delivery counts, responses, presence and resource events
between server processes over Redis pub/sub (`TETHER_REDIS_URL`).

Redis may be down when the server starts, or go away and come back. The backplane then keeps
trying with backoff (0.1 s doubling to 5 s), reports why in `problem` (which `/api/v1/health`
shows), refuses broadcasts at once with `BackplaneDown` instead of waiting on a dead socket,
and once Redis answers again re-announces this node and its subscribers' presence, which a
restarted Redis no longer holds.

A process holds a bounded pool of Redis connections (`POOL`) however many sockets it serves:
one for its pub/sub subscription, and one writer that sends what needs no answer (presence,
events, delivery counts, responses) in pipelined batches, so that a flood of subscriptions
costs round trips, never connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any

import msgspec

from tether.server.realtime.backplane import Backplane, BackplaneDown, ChannelKey, Member, Node
from tether.server.realtime.events import Event

logger = logging.getLogger("tether.server")

FIRST_RETRY = 0.1
LAST_RETRY = 5.0
TIMEOUT = 2.0
"""Seconds a Redis connect or command may take before Redis counts as unreachable."""
POOL = 16
"""Redis connections a process holds at most; a command waits (up to `TIMEOUT`) for a free one."""
BATCH = 1000
"""Commands the writer sends in one pipeline."""
BACKLOG = 100_000
"""Commands waiting for the writer at most; beyond it, they are dropped (and logged)."""


class RedisBackplane(Backplane):
    """Every process listens on one shared channel (broadcasts), one for events, one for
    presence and its own inbox (delivery counts and responses), and keeps itself in a sorted
    set of live nodes with a heartbeat, so the process that broadcasts knows how many nodes to
    hear back from."""

    BROADCASTS = "tether:rt:broadcast"
    EVENTS = "tether:rt:events"
    PRESENCE = "tether:rt:presence"
    NODES = "tether:rt:nodes"
    HEARTBEAT = 2.0

    def __init__(self, url: str, hub: Node) -> None:
        import redis.asyncio

        self.hub = hub
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL,
            timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
        )
        self.redis: Any = redis.asyncio.Redis(connection_pool=pool)
        self.problem = "not connected to Redis yet"
        self._connected_before = False
        """Whether Redis was reached before (so a new connection restores realtime)."""
        self._outgoing: deque[tuple[str, tuple[Any, ...]]] = deque()
        """Commands for the writer: (method name, arguments)."""
        self._wake = asyncio.Event()
        self._writing = False
        """Whether the writer runs (a connection is up), so that queued commands will go."""
        self._first = asyncio.Event()
        """Set once the first connection attempt has ended, either way."""

    def _inbox(self, node: str) -> str:
        return f"tether:rt:node:{node}"

    async def _up(self) -> None:
        """Refuse at once while Redis is unreachable; just after start, wait for the first
        connection attempt (at most `TIMEOUT`) rather than refuse before trying."""
        if not self._first.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TIMEOUT):
                    await self._first.wait()
        if self.problem is not None:
            raise BackplaneDown(self.problem)

    async def _ask(self, command: Awaitable[Any]) -> Any:
        """A Redis command whose answer a caller waits for: `BackplaneDown` if it fails."""
        try:
            return await command
        except Exception as exc:
            raise BackplaneDown(self._lost(exc)) from None

    async def nodes(self) -> set[str]:
        await self._up()
        since = time.time() - 3 * self.HEARTBEAT
        alive = await self._ask(self.redis.zrangebyscore(self.NODES, since, "+inf"))
        return {n.decode() for n in alive} - {self.hub.node}

    async def broadcast(self, key: ChannelKey, frame: dict[str, Any]) -> None:
        await self._up()
        message = {"origin": self.hub.node, "key": list(key), "frame": frame}
        await self._ask(self.redis.publish(self.BROADCASTS, msgspec.json.encode(message)))

    def respond(self, origin: str, space: str, broadcast_id: str, answer: dict[str, Any]) -> None:
        message = {"op": "response", "org": space, "broadcast": broadcast_id, "answer": answer}
        self._send(origin, message)

    def _presence_key(self, key: ChannelKey) -> str:
        return "tether:rt:presence:" + msgspec.json.encode(list(key)).decode()

    def presence(self, key: ChannelKey, frame: dict[str, Any], client: Member, change: str) -> None:
        """Tell the other nodes' subscribers, and keep the cluster-wide member list."""
        store = self._presence_key(key)
        if change == "joined":
            self._later("hset", store, self._field(client), self._member(client))
        else:
            self._later("hdel", store, self._field(client))
        message = {"origin": self.hub.node, "key": list(key), "frame": frame}
        self._later("publish", self.PRESENCE, msgspec.json.encode(message))

    def _field(self, client: Member) -> str:
        return f"{self.hub.node}:{id(client)}"

    def _member(self, client: Member) -> bytes:
        return msgspec.json.encode(client.member)

    async def members(self, key: ChannelKey, local: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Everyone in the channel on live nodes. A dead node's members are left out and
        removed from the shared list, which it can no longer clean up itself."""
        alive = await self.nodes() | {self.hub.node}
        store = self._presence_key(key)
        stored = await self._ask(self.redis.hgetall(store))
        seen = {(m["type"], m["id"]): m for m in local}
        dead = []
        for field_name, value in stored.items():
            if field_name.decode().split(":", 1)[0] not in alive:
                dead.append(field_name)
                continue
            member = msgspec.json.decode(value)
            seen.setdefault((member["type"], member["id"]), member)
        if dead:
            self._later("hdel", store, *dead)
        return list(seen.values())

    def event(self, event: Event) -> None:
        message = {"origin": self.hub.node, "event": msgspec.structs.asdict(event)}
        self._later("publish", self.EVENTS, msgspec.json.encode(message))

    def _send(self, node: str, message: dict[str, Any]) -> None:
        self._later("publish", self._inbox(node), msgspec.json.encode(message))

    def _later(self, command: str, *args: Any) -> None:
        """Hand a command nobody waits on to the writer. While no connection is up it is
        dropped: what it carried is re-announced on reconnection, or was only worth its moment."""
        if not self._writing:
            return
        if len(self._outgoing) >= BACKLOG:
            logger.warning("Redis writer backlog full: dropped a %s", command)
            return
        self._outgoing.append((command, args))
        self._wake.set()

    async def _write(self) -> None:
        """Send queued commands in pipelined batches on one connection, until one fails
        (which ends the connection's life in `_relay`)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outgoing:
                count = min(BATCH, len(self._outgoing))
                batch = [self._outgoing.popleft() for _ in range(count)]
                async with self.redis.pipeline(transaction=False) as pipe:
                    for command, args in batch:
                        getattr(pipe, command)(*args)
                    await pipe.execute()

    def _lost(self, exc: BaseException) -> str:
        """Note that Redis is unreachable (logged once per outage); the reason."""
        reason = f"Redis is unreachable: {type(exc).__name__}: {exc}"
        if self.problem is None:
            logger.warning("realtime across nodes stopped: %s", reason)
        self.problem = reason
        return reason

    def _restored(self) -> None:
        if self.problem is not None and self._connected_before:
            logger.warning("realtime across nodes restored")
        self._connected_before = True
        self.problem = None

    async def run(self) -> None:
        """Relay until cancelled, reconnecting with backoff whenever Redis goes away."""
        delay = FIRST_RETRY
        try:
            while True:
                try:
                    await self._relay()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self.problem is None:
                        delay = FIRST_RETRY
                    self._lost(exc)
                self._first.set()
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(LAST_RETRY, delay * 2)
        finally:
            await self._leave()

    async def _relay(self) -> None:
        """One connection's life: subscribe, announce, then handle messages until it fails."""
        await self.redis.connection_pool.disconnect()
        pubsub = self.redis.pubsub()
        helpers: list[asyncio.Task[None]] = []
        try:
            await pubsub.subscribe(
                self.BROADCASTS, self.EVENTS, self.PRESENCE, self._inbox(self.hub.node)
            )
            self._writing = True
            await self._announce()
            self._restored()
            self._first.set()
            loop = asyncio.get_running_loop()
            helpers = [loop.create_task(self._heartbeat()), loop.create_task(self._write())]
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self.HEARTBEAT
                )
                for helper in helpers:
                    if helper.done():
                        helper.result()
                if message is None or message.get("type") != "message":
                    continue
                try:
                    self._handle(message["channel"].decode(), msgspec.json.decode(message["data"]))
                except Exception:
                    logger.exception("bad realtime relay message")
        finally:
            self._writing = False
            self._outgoing.clear()
            for helper in helpers:
                helper.cancel()
            try:
                await pubsub.aclose()
            except Exception:
                logger.debug("closing a lost Redis subscription failed", exc_info=True)

    async def _announce(self) -> None:
        """Put this node and its subscribers back in Redis (a restarted Redis is empty)."""
        await self.redis.zadd(self.NODES, {self.hub.node: time.time()})
        subscriptions = self.hub.subscriptions()
        for start in range(0, len(subscriptions), BATCH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, client in subscriptions[start : start + BATCH]:
                    pipe.hset(self._presence_key(key), self._field(client), self._member(client))
                await pipe.execute()

    async def _heartbeat(self) -> None:
        """Keep this node in the live set; once Redis answers again after a command failed
        while the subscription held, announce again and say realtime is back."""
        while True:
            await asyncio.sleep(self.HEARTBEAT)
            await self.redis.zadd(self.NODES, {self.hub.node: time.time()})
            if self.problem is not None:
                await self._announce()
                self._restored()

    async def _leave(self) -> None:
        try:
            if self.problem is None:
                await self.redis.zrem(self.NODES, self.hub.node)
        except Exception:
            logger.debug("leaving the node set failed", exc_info=True)
        finally:
            await self.redis.aclose()

    def _handle(self, channel: str, message: dict[str, Any]) -> None:
        if channel == self.PRESENCE:
            if message["origin"] != self.hub.node:
                self.hub.tell_watchers(_key(message["key"]), message["frame"])
        elif channel == self.EVENTS:
            if message["origin"] != self.hub.node:
                self.hub.heard(msgspec.convert(message["event"], Event))
        elif channel == self.BROADCASTS:
            if message["origin"] == self.hub.node:
                return
            frame = message["frame"]
            count = self.hub.deliver_broadcast(_key(message["key"]), frame)
            self._send(
                message["origin"],
                {
                    "op": "delivered",
                    "broadcast": frame["broadcast"],
                    "node": self.hub.node,
                    "count": count,
                },
            )
        elif message.get("op") == "delivered":
            self.hub.delivered(message["broadcast"], message["node"], int(message["count"]))
        elif message.get("op") == "response":
            self.hub.answered(message["org"], message["broadcast"], message["answer"])


def _key(sent: list[Any]) -> ChannelKey:
    """A channel key back from its JSON list form."""
    org_id, name, system, consumer = sent
    return (org_id, name, bool(system), bool(consumer))
