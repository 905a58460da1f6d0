"""The Redis backplane: broadcasts, delivery counts, responses, presence and resource events
between server processes over Redis pub/sub (`TETHER_REDIS_URL`).

Redis may be down when the server starts, or go away and come back. The backplane then keeps
trying with backoff (0.1 s doubling to 5 s), reports why in `problem` (which `/api/v1/health`
shows), refuses broadcasts at once with `BackplaneDown` instead of waiting on a dead socket,
and once Redis answers again re-announces this node and its subscribers' presence, which a
restarted Redis no longer holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
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
        self.redis: Any = redis.asyncio.from_url(
            url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
        )
        self.problem = "not connected to Redis yet"
        self._connected_before = False
        """Whether Redis was reached before (so a new connection restores realtime)."""
        self._tasks: set[asyncio.Task[Any]] = set()
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

    def respond(self, origin: str, org_id: str, broadcast_id: str, answer: dict[str, Any]) -> None:
        message = {"op": "response", "org": org_id, "broadcast": broadcast_id, "answer": answer}
        self._send(origin, message)

    def _presence_key(self, key: ChannelKey) -> str:
        return "tether:rt:presence:" + msgspec.json.encode(list(key)).decode()

    def presence(self, key: ChannelKey, frame: dict[str, Any], client: Member, change: str) -> None:
        """Tell the other nodes' subscribers, and keep the cluster-wide member list."""
        store = self._presence_key(key)
        if change == "joined":
            self._spawn(self.redis.hset(store, self._field(client), self._member(client)))
        else:
            self._spawn(self.redis.hdel(store, self._field(client)))
        message = {"origin": self.hub.node, "key": list(key), "frame": frame}
        self._spawn(self.redis.publish(self.PRESENCE, msgspec.json.encode(message)))

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
            self._spawn(self.redis.hdel(store, *dead))
        return list(seen.values())

    def event(self, event: Event) -> None:
        message = {"origin": self.hub.node, "event": msgspec.structs.asdict(event)}
        self._spawn(self.redis.publish(self.EVENTS, msgspec.json.encode(message)))

    def _send(self, node: str, message: dict[str, Any]) -> None:
        self._spawn(self.redis.publish(self._inbox(node), msgspec.json.encode(message)))

    def _spawn(self, work: Awaitable[Any]) -> None:
        """Run a Redis command in the background; while Redis is down it is dropped (what it
        carried is re-announced on reconnection, or was only worth its moment)."""
        if self.problem is not None:
            if asyncio.iscoroutine(work):
                work.close()
            return
        task = asyncio.get_running_loop().create_task(self._quietly(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quietly(self, work: Awaitable[Any]) -> None:
        try:
            await work
        except Exception as exc:
            self._lost(exc)

    def _lost(self, exc: BaseException) -> str:
        """Note that Redis is unreachable (logged once per outage); the reason."""
        reason = f"Redis is unreachable: {type(exc).__name__}: {exc}"
        if self.problem is None:
            logger.warning("realtime across nodes stopped: %s", reason)
        self.problem = reason
        return reason

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
        beating: asyncio.Task[None] | None = None
        try:
            await pubsub.subscribe(
                self.BROADCASTS, self.EVENTS, self.PRESENCE, self._inbox(self.hub.node)
            )
            await self._announce()
            if self.problem is not None and self._connected_before:
                logger.warning("realtime across nodes restored")
            self._connected_before = True
            self.problem = None
            self._first.set()
            beating = asyncio.get_running_loop().create_task(self._heartbeat())
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self.HEARTBEAT
                )
                if beating.done():
                    beating.result()
                if message is None or message.get("type") != "message":
                    continue
                try:
                    self._handle(message["channel"].decode(), msgspec.json.decode(message["data"]))
                except Exception:
                    logger.exception("bad realtime relay message")
        finally:
            if beating is not None:
                beating.cancel()
            try:
                await pubsub.aclose()
            except Exception:
                logger.debug("closing a lost Redis subscription failed", exc_info=True)

    async def _announce(self) -> None:
        """Put this node and its subscribers back in Redis (a restarted Redis is empty)."""
        await self.redis.zadd(self.NODES, {self.hub.node: time.time()})
        for key, client in self.hub.subscriptions():
            await self.redis.hset(
                self._presence_key(key), self._field(client), self._member(client)
            )

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.HEARTBEAT)
            await self.redis.zadd(self.NODES, {self.hub.node: time.time()})

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
