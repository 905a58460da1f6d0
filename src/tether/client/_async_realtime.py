"""`AsyncRealtime`: the client's one WebSocket, its channels, listeners and event callbacks.

This file is the source of both twins: `scripts/unasync.py` writes `_sync_realtime.py` from it
(a reader thread there, an asyncio task here).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether._exceptions import (
    ClientClosedError,
    ConfigurationError,
    NetworkError,
    RealtimeError,
    TetherError,
)
from tether.client._answers import Answer
from tether.client._flows import pause
from tether.client._workers import (
    _async_future,
    _async_get,
    _async_queue,
    _async_result,
    _async_ws_connect,
    _AsyncWorker,
    _settle,
)

if TYPE_CHECKING:
    from tether.client._async_client import AsyncClient

logger = logging.getLogger("tether")

ChannelKey = tuple[str, bool, bool]
RECONNECT_WAIT = 10.0
"""How long a call waits for the reader to bring a dropped socket back before it fails."""


class AsyncBroadcast:
    """A message sent to a channel; `respond()` answers the broadcaster."""

    def __init__(self, realtime: AsyncRealtime, frame: dict[str, Any]) -> None:
        self._realtime = realtime
        self.name: str = frame["name"]
        self.payload: Any = frame.get("payload")
        self.channel: str = frame["channel"]
        self.id: str = frame["broadcast"]
        self.sent_at: float = float(frame.get("sent_at") or time.time())
        self.timeout: float | None = frame.get("timeout")
        """Seconds the broadcaster waits for answers (an answer after that is refused)."""

    async def respond(self, value: Any = None) -> None:
        await self._realtime.send({"op": "respond", "broadcast": self.id, "payload": value})

    def __repr__(self) -> str:
        return f"<Broadcast {self.channel}:{self.name} {self.payload!r}>"


class AsyncListener:
    """Broadcasts of one name on one channel, in order; older than `max_age` are dropped."""

    def __init__(self, channel: AsyncChannel, name: str, max_age: float) -> None:
        self.channel = channel
        self.name = name
        self.max_age = max_age
        self._queue = _async_queue()
        self.cancelled = False

    def _deliver(self, broadcast: AsyncBroadcast) -> None:
        self._queue.put_nowait(broadcast)

    async def wait(self, timeout: float | None = 0) -> AsyncBroadcast | None:
        """The next broadcast, waiting up to `timeout` seconds (None: forever); None if none."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.cancelled:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                broadcast: AsyncBroadcast = await _async_get(self._queue, left)
            except TimeoutError:
                return None
            if time.time() - broadcast.sent_at <= self.max_age:
                return broadcast
        return None

    async def cancel(self) -> None:
        await self.channel._realtime.remove_listener(self)

    def __aiter__(self) -> AsyncListener:
        return self

    async def __anext__(self) -> AsyncBroadcast:
        broadcast = await self.wait(timeout=None)
        if broadcast is None:
            raise StopAsyncIteration
        return broadcast


class AsyncEventStream:
    """Resource events in arrival order: `wait(timeout)` or iterate."""

    def __init__(self, realtime: AsyncRealtime) -> None:
        self._realtime = realtime
        self._queue = _async_queue()

    def _deliver(self, frame: dict[str, Any]) -> None:
        self._queue.put_nowait(frame)

    async def wait(self, timeout: float | None = 0) -> dict[str, Any] | None:
        """The next event, waiting up to `timeout` seconds (None: forever); None if none."""
        try:
            return await _async_get(self._queue, timeout)  # type: ignore[no-any-return]
        except TimeoutError:
            return None

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        event = await self.wait(timeout=None)
        if event is None:
            raise StopAsyncIteration
        return event


class AsyncChannel:
    """A named channel of the organization; `system` and `consumer` make distinct channels."""

    def __init__(self, realtime: AsyncRealtime, name: str, system: bool, consumer: bool) -> None:
        self._realtime = realtime
        self.name = name
        self.system = system
        self.consumer = consumer

    @property
    def key(self) -> ChannelKey:
        return (self.name, self.system, self.consumer)

    def _frame(self, **extra: Any) -> dict[str, Any]:
        return {"channel": self.name, "system": self.system, "consumer": self.consumer, **extra}

    async def broadcast(self, name: str, payload: Any = None, timeout: float = 0.1) -> list[Any]:
        """Send to every subscriber (in the whole cluster); the payloads of the answers that
        came back within `timeout` seconds (`collect` also says who gave each)."""
        return [answer.payload for answer in await self.collect(name, payload, timeout)]

    async def collect(self, name: str, payload: Any = None, timeout: float = 0.1) -> list[Answer]:
        """Send to every subscriber (in the whole cluster); the answers that came back within
        `timeout` seconds, each with who gave it."""
        reply = await self._realtime.request(
            self._frame(op="broadcast", name=name, payload=payload, timeout=timeout),
            timeout + 10,
        )
        return [Answer.of(each) for each in reply.get("answers", ())]

    async def listen(self, name: str, timeout: float = 10, max_age: float = 60) -> AsyncListener:
        """Subscribe to broadcasts called `name` ("*" for every name); NetworkError if the
        server does not confirm the subscription within `timeout` seconds."""
        listener = AsyncListener(self, name, max_age)
        await self._realtime.add_listener(listener, timeout)
        return listener

    async def members(self, timeout: float = 10) -> list[dict[str, Any]]:
        """Who is subscribed right now, across the cluster: type, id and name of each."""
        reply = await self._realtime.request(self._frame(op="who"), timeout)
        return list(reply["members"])

    async def on_presence(
        self, callback: Callable[[str, dict[str, Any]], Any], timeout: float = 10
    ) -> AsyncListener:
        """Call `callback("joined" | "left", member)` as others subscribe and leave; this
        subscribes to the channel. Cancel the returned listener to stop."""
        realtime = self._realtime
        first = self.key not in realtime._presence
        realtime._presence.setdefault(self.key, []).append(callback)
        if first and self.key in realtime._listeners:
            await realtime.request(realtime.subscribe_frame(self.key), timeout)
        return await self.listen("", timeout)

    async def fling(self, payload: Any) -> None:
        """Ask the apps on this channel to launch `payload` (EXP's fling)."""
        await self.broadcast("fling", payload, timeout=0)

    async def identify(self) -> None:
        """Ask the devices on this channel to identify themselves (blink, beep…)."""
        await self.broadcast("identify", None, timeout=0)

    def __repr__(self) -> str:
        return f"<Channel {self.name} system={self.system} consumer={self.consumer}>"


class AsyncRealtime:
    """Opens the socket on first use, reconnects with backoff and jitter, resubscribes."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._socket: Any = None
        self._worker: _AsyncWorker | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, Any] = {}
        self._listeners: dict[ChannelKey, set[AsyncListener]] = {}
        self._callbacks: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}
        self._presence: dict[ChannelKey, list[Callable[[str, dict[str, Any]], Any]]] = {}
        self._feeds: dict[str, tuple[Callable[[dict[str, Any]], None], Callable[[], Any]]] = {}
        self._failures = 0
        self._current = 0
        self._closed = False

    @property
    def is_connected(self) -> bool:
        return self._socket is not None

    def _urls(self) -> list[str]:
        """The socket URL on the client's server, then on each failover server, starting
        with the one that answered last."""
        session = self._client._session
        path = session.resolve("realtime").removeprefix(session.url)
        urls = [session.url + path, *(base + path for base in self._client.failover_urls)]
        urls = ["ws" + url.removeprefix("http") for url in urls]
        return urls[self._current :] + urls[: self._current]

    async def _connect(self) -> None:
        if not self._client.enable_network:
            raise ConfigurationError("Networking is disabled for this client.")
        await self._client.get_auth()
        header = self._client._session.authorization()
        headers = {"Authorization": header} if header else {}
        urls = self._urls()
        failure: Exception | None = None
        for offset, url in enumerate(urls):
            try:
                self._socket = await _async_ws_connect(url, headers)
            except Exception as exc:
                failure = exc
                continue
            self._current = (self._current + offset) % len(urls)
            break
        else:
            raise NetworkError(f"Cannot open the realtime socket: {failure}") from failure
        self._failures = 0
        for key in self._listeners:
            await self._send_frame({"id": next(self._ids), **self.subscribe_frame(key)})
        if self._callbacks:
            await self._send_frame(
                {"op": "events", "id": next(self._ids), "types": list(self._callbacks)}
            )
        for _sink, resume in self._feeds.values():
            await self._send_frame({**resume(), "id": next(self._ids)})

    async def _ensure(self) -> None:
        if self._closed:
            raise ClientClosedError("This client is closed; create a new one.")
        if self._socket is None and self._worker is None:
            await self._connect()
        waited = 0.0
        while self._socket is None:
            if waited >= RECONNECT_WAIT:
                raise NetworkError("The realtime socket is down and not back yet; try again.")
            await self._client._run(pause(0.05))
            waited += 0.05
        if self._worker is None:
            self._worker = _AsyncWorker(self._step)
            self._worker.start()

    async def _step(self) -> float:
        """Read one frame and dispatch it; after a dropped socket, reconnect (with backoff)."""
        if self._closed:
            return 3600.0
        if self._socket is None:
            try:
                await self._connect()
            except TetherError as exc:
                self._failures += 1
                delay: float = min(30.0, 0.2 * 2**self._failures) * random.uniform(0.5, 1.0)
                logger.info("realtime reconnect failed (%s); next try in %.1f s", exc, delay)
                return delay
        try:
            text = await self._socket.recv()
        except Exception as exc:
            logger.info("realtime socket closed: %r", exc)
            self._drop("the realtime socket closed")
            return 0.0
        self._dispatch(json.loads(text))
        return 0.0

    def _drop(self, why: str) -> None:
        self._socket = None
        for future in self._pending.values():
            _settle(future, NetworkError(why))
        self._pending.clear()

    def _dispatch(self, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if op in ("ack", "responses", "members", "error") and frame.get("id") in self._pending:
            future = self._pending.pop(frame["id"])
            if op == "error":
                _settle(future, RealtimeError(str(frame.get("message")), str(frame.get("code"))))
            else:
                _settle(future, frame)
        elif op == "broadcast":
            key = _frame_key(frame)
            broadcast = AsyncBroadcast(self, frame)
            for listener in list(self._listeners.get(key, ())):
                if listener.name in (broadcast.name, "*"):
                    listener._deliver(broadcast)
        elif op == "presence":
            key = _frame_key(frame)
            change = "joined" if "joined" in frame else "left"
            for watcher in list(self._presence.get(key, ())):
                try:
                    watcher(change, frame[change])
                except Exception:
                    logger.exception("presence callback failed")
        elif op in self._feeds:
            try:
                self._feeds[str(op)][0](frame)
            except Exception:
                logger.exception("handling a %s frame failed", op)
        elif op == "event":
            name = f"{frame['type']}:{frame['action']}"
            for pattern, callbacks in list(self._callbacks.items()):
                if pattern in ("*", name, f"{frame['type']}:*"):
                    for callback in callbacks:
                        try:
                            callback(frame)
                        except Exception:
                            logger.exception("realtime event callback failed")

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        try:
            await self._socket.send(json.dumps(frame))
        except Exception as exc:
            self._drop("the realtime socket closed")
            raise NetworkError(f"Cannot send on the realtime socket: {exc}") from exc

    async def send(self, frame: dict[str, Any]) -> None:
        await self._ensure()
        await self._send_frame(frame)

    async def request(self, frame: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a frame with a fresh id and wait for the server's answer to it."""
        await self._ensure()
        request_id = next(self._ids)
        future = _async_future()
        self._pending[request_id] = future
        await self._send_frame({**frame, "id": request_id})
        try:
            return await _async_result(future, timeout)  # type: ignore[no-any-return]
        except TimeoutError:
            raise NetworkError(f"No answer to {frame['op']} within {timeout} s") from None
        finally:
            self._pending.pop(request_id, None)

    async def add_listener(self, listener: AsyncListener, timeout: float) -> None:
        key = listener.channel.key
        if key not in self._listeners:
            await self.request(self.subscribe_frame(key), timeout)
        self._listeners.setdefault(key, set()).add(listener)

    def subscribe_frame(self, key: ChannelKey) -> dict[str, Any]:
        """Subscribe to a channel, asking for its presence changes when someone watches them."""
        frame: dict[str, Any] = {"op": "subscribe", **_key_frame(key)}
        if key in self._presence:
            frame["presence"] = True
        return frame

    async def remove_listener(self, listener: AsyncListener) -> None:
        listener.cancelled = True
        key = listener.channel.key
        members = self._listeners.get(key)
        if members is None:
            return
        members.discard(listener)
        if not members:
            del self._listeners[key]
            if self._socket is not None:
                await self._send_frame(
                    {"op": "unsubscribe", "id": next(self._ids), **_key_frame(key)}
                )

    async def listen_events(self, *events: str) -> AsyncEventStream:
        """Resource events named like `events` ("device:created", "zone:*", "*"), to iterate
        over or `wait()` for."""
        stream = AsyncEventStream(self)
        for event in events or ("*",):
            await self.on(event, stream._deliver)
        return stream

    async def on(self, event: str, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Call `callback(frame)` for each resource event named `event` ("device:created",
        "device:*", "*")."""
        self._callbacks.setdefault(event, []).append(callback)
        await self.request({"op": "events", "types": list(self._callbacks)}, 10)

    async def take(
        self,
        op: str,
        sink: Callable[[dict[str, Any]], None],
        resume: Callable[[], dict[str, Any]],
        timeout: float,
    ) -> dict[str, Any]:
        """Have the server deliver a feed of frames (`op`: a device's `command`s, its `twin`)
        on this socket, each to `sink`; `resume()` is the frame that asks for it, sent now and
        again after every reconnect. The server's answer to the first one."""
        self._feeds[op] = (sink, resume)
        return await self.request(resume(), timeout)

    async def close(self) -> None:
        self._closed = True
        for members in list(self._listeners.values()):
            for listener in members:
                listener.cancelled = True
        self._listeners.clear()
        socket, self._socket = self._socket, None
        if socket is not None:
            try:
                await socket.close()
            except Exception:
                logger.debug("closing the realtime socket failed", exc_info=True)
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.stop()


def _frame_key(frame: dict[str, Any]) -> ChannelKey:
    return (frame["channel"], bool(frame.get("system")), bool(frame.get("consumer")))


def _key_frame(key: ChannelKey) -> dict[str, Any]:
    return {"channel": key[0], "system": key[1], "consumer": key[2]}
