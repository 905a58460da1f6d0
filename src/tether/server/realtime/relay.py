"""The realtime relay: broadcasts, delivery counts, responses, presence and resource events
between server processes over Redis pub/sub (`TETHER_REDIS_URL`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import msgspec

from tether.server.realtime.events import Event
from tether.server.realtime.hub import ChannelKey, Client, Hub

logger = logging.getLogger("tether.server")


class Relay:
    """Broadcasts and responses between server processes over Redis pub/sub.

    Every process listens on one shared channel (broadcasts) and on its own (delivery counts
    and responses), and keeps itself in a sorted set of live nodes with a heartbeat, so the
    process that broadcasts knows how many nodes to hear back from."""

    BROADCASTS = "tether:rt:broadcast"
    EVENTS = "tether:rt:events"
    PRESENCE = "tether:rt:presence"
    NODES = "tether:rt:nodes"
    HEARTBEAT = 2.0

    def __init__(self, url: str, hub: Hub) -> None:
        import redis.asyncio

        self.hub = hub
        self.redis: Any = redis.asyncio.from_url(url)
        self._tasks: set[asyncio.Task[Any]] = set()

    def _inbox(self, node: str) -> str:
        return f"tether:rt:node:{node}"

    async def nodes(self) -> set[str]:
        alive = await self.redis.zrangebyscore(self.NODES, time.time() - 3 * self.HEARTBEAT, "+inf")
        return {n.decode() for n in alive}

    async def broadcast(self, key: ChannelKey, frame: dict[str, Any]) -> None:
        message = {"origin": self.hub.node, "key": list(key), "frame": frame}
        await self.redis.publish(self.BROADCASTS, msgspec.json.encode(message))

    def respond(self, origin: str, org_id: str, broadcast_id: str, payload: Any) -> None:
        message = {"op": "response", "org": org_id, "broadcast": broadcast_id, "payload": payload}
        self._send(origin, message)

    def _presence_key(self, key: ChannelKey) -> str:
        return "tether:rt:presence:" + msgspec.json.encode(list(key)).decode()

    def presence(self, key: ChannelKey, frame: dict[str, Any], client: Client, change: str) -> None:
        """Tell the other nodes' subscribers, and keep the cluster-wide member list."""
        field_name = f"{self.hub.node}:{id(client)}"
        store = self._presence_key(key)
        if change == "joined":
            self._spawn(self._call("hset", store, field_name, msgspec.json.encode(client.member)))
        else:
            self._spawn(self._call("hdel", store, field_name))
        message = {"origin": self.hub.node, "key": list(key), "frame": frame}
        self._spawn(self._publish(self.PRESENCE, msgspec.json.encode(message)))

    async def _call(self, command: str, *args: Any) -> None:
        await getattr(self.redis, command)(*args)

    async def members(self, key: ChannelKey, local: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Everyone in the channel on live nodes. A dead node's members are left out and
        removed from the shared list, which it can no longer clean up itself."""
        alive = await self.nodes() | {self.hub.node}
        store = self._presence_key(key)
        stored = await self.redis.hgetall(store)
        seen = {(m["type"], m["id"]): m for m in local}
        dead = []
        for field_name, value in stored.items():
            if field_name.decode().split(":", 1)[0] not in alive:
                dead.append(field_name)
                continue
            member = msgspec.json.decode(value)
            seen.setdefault((member["type"], member["id"]), member)
        if dead:
            await self.redis.hdel(store, *dead)
        return list(seen.values())

    def event(self, event: Event) -> None:
        message = {"origin": self.hub.node, "event": msgspec.structs.asdict(event)}
        self._spawn(self._publish(self.EVENTS, msgspec.json.encode(message)))

    def _send(self, node: str, message: dict[str, Any]) -> None:
        self._spawn(self._publish(self._inbox(node), msgspec.json.encode(message)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, channel: str, data: bytes) -> None:
        await self.redis.publish(channel, data)

    async def run(self) -> None:
        """Heartbeat and relay until cancelled."""
        beating = asyncio.get_running_loop().create_task(self._heartbeat())
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(
            self.BROADCASTS, self.EVENTS, self.PRESENCE, self._inbox(self.hub.node)
        )
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    self._handle(message["channel"].decode(), msgspec.json.decode(message["data"]))
                except Exception:
                    logger.exception("bad realtime relay message")
        finally:
            beating.cancel()
            await pubsub.aclose()
            await self.redis.zrem(self.NODES, self.hub.node)
            await self.redis.aclose()

    def _handle(self, channel: str, message: dict[str, Any]) -> None:
        if channel == self.PRESENCE:
            if message["origin"] != self.hub.node:
                self.hub.tell_watchers(_key(message["key"]), message["frame"])
        elif channel == self.EVENTS:
            if message["origin"] != self.hub.node:
                self.hub.publish(msgspec.convert(message["event"], Event))
        elif channel == self.BROADCASTS:
            if message["origin"] == self.hub.node:
                return
            frame = message["frame"]
            count = self.hub.deliver(_key(message["key"]), frame)
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
            self.hub.respond(message["org"], message["broadcast"], message["payload"])

    async def _heartbeat(self) -> None:
        while True:
            await self.redis.zadd(self.NODES, {self.hub.node: time.time()})
            await asyncio.sleep(self.HEARTBEAT)


def _key(sent: list[Any]) -> ChannelKey:
    """A channel key back from its JSON list form."""
    org_id, name, system, consumer = sent
    return (org_id, name, bool(system), bool(consumer))
