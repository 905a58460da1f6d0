"""`AsyncClient`: the SDK's entry point for asyncio code.

This file is the source of both twins: `scripts/unasync.py` writes `_sync_client.py` from it
(`Client`), so the two cannot drift apart; a test checks the generated file is current.
"""

from __future__ import annotations

import os
import ssl
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from tether._exceptions import ClientClosedError
from tether.client._async_commands import AsyncCommands
from tether.client._async_files import AsyncFiles
from tether.client._async_realtime import AsyncChannel, AsyncEventStream, AsyncRealtime
from tether.client._async_resources import (
    AsyncCollection,
    AsyncContent,
    AsyncDataCollection,
    AsyncDevice,
    AsyncExperience,
    AsyncFeed,
    AsyncLocation,
    AsyncProject,
    AsyncResource,
    AsyncThing,
    AsyncZone,
)
from tether.client._async_telemetry import AsyncTelemetry
from tether.client._async_twin import AsyncTwins
from tether.client._async_updates import AsyncUpdates
from tether.client._config import DEFAULT_TIMEOUT, Retries
from tether.client._credentials import Credentials, resolve
from tether.client._flows import Flow, T, pause, run_async
from tether.client._oauth import OAuthGrant
from tether.client._session import (
    USE_CLIENT_DEFAULT,
    AuthPayload,
    Body,
    PairingCode,
    Session,
    Timeout,
)

_OPEN: weakref.WeakSet[AsyncClient] = weakref.WeakSet()
"""Every client of this flavour that is open, for `aclose_all`."""


async def aclose_all() -> int:
    """Close every client of this flavour the process opened and has not closed: their
    listeners, sockets and background pushing stop, and any later call on them raises
    `ClientClosedError` (the SDK's whole stop, like a program's last line). Returns how many
    it closed; new clients may be opened afterwards."""
    still_open = list(_OPEN)
    for client in still_open:
        await client.close()
    return len(still_open)


class AsyncClient:
    """A connection to one Tether server with one identity.

    Credentials come from the arguments, else the environment, a netrc file (`netrc`, else
    `NETRC`, else `~/.netrc`) and the saved CLI login (see the SDK guide). Several clients can
    live in one process independently.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        organization: str | None = None,
        device_id: str | None = None,
        device_secret: str | None = None,
        app_id: str | None = None,
        api_key: str | None = None,
        allow_pairing: bool = False,
        on_pairing_code: Callable[[PairingCode], None] | None = None,
        pairing_name: str | None = None,
        pairing_organization: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: Retries | None = None,
        verify: bool | str | ssl.SSLContext = True,
        enable_network: bool = True,
        failover_urls: Sequence[str] = (),
        update_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
        netrc: str | os.PathLike[str] | None = None,
        oauth: OAuthGrant | None = None,
        on_tokens: Callable[[AuthPayload], None] | None = None,
    ) -> None:
        arguments = {
            "token": token,
            "username": username,
            "password": password,
            "organization": organization,
            "device_id": device_id,
            "device_secret": device_secret,
            "app_id": app_id,
            "api_key": api_key,
        }
        base_url, credentials = resolve(url, arguments, environ, netrc)
        if oauth is not None:
            credentials = Credentials(kind="oauth", oauth=oauth)
        self._session = Session(
            base_url,
            credentials,
            timeout=timeout,
            retries=retries or Retries(),
            allow_pairing=allow_pairing,
            on_pairing_code=on_pairing_code,
            pairing_name=pairing_name,
            pairing_organization=pairing_organization,
            failover_urls=failover_urls,
            on_tokens=on_tokens,
        )
        self.enable_network = enable_network
        self.failover_urls = [u.rstrip("/") for u in failover_urls]
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._http = httpx.AsyncClient(
            transport=transport, verify=verify, timeout=timeout, follow_redirects=False
        )
        self._closed = False
        self.devices = AsyncCollection(self, "devices", AsyncDevice)
        self.things = AsyncCollection(self, "things", AsyncThing)
        self.locations = AsyncCollection(self, "locations", AsyncLocation)
        self.zones = AsyncCollection(self, "zones", AsyncZone)
        self.experiences = AsyncCollection(self, "experiences", AsyncExperience)
        self.feeds = AsyncCollection(self, "feeds", AsyncFeed)
        self.content = AsyncCollection(self, "content", AsyncContent)
        self.apps = AsyncCollection(self, "apps", AsyncResource)
        self.projects = AsyncCollection(self, "projects", AsyncProject)
        self.data = AsyncDataCollection(self)
        self._telemetry: AsyncTelemetry | None = None
        self.files = AsyncFiles(self)
        self._realtime: AsyncRealtime | None = None
        environment = os.environ if environ is None else environ
        self.updates = AsyncUpdates(self, update_key or environment.get("TETHER_UPDATE_KEY"))
        self.commands = AsyncCommands(self)
        """Send and follow commands; on a device, `on(name)` handlers and `start()`."""
        self.twins = AsyncTwins(self)
        """Read and change device twins; on a device, `on_desired`, `start()`, `report()`."""
        _OPEN.add(self)

    @property
    def url(self) -> str:
        return self._session.url

    @property
    def credentials(self) -> Any:
        """The credentials in use (after pairing: the device's new id and secret)."""
        return self._session.credentials

    @property
    def auth(self) -> AuthPayload:
        """The current authentication payload, without contacting the server."""
        return self._session.payload()

    @property
    def telemetry(self) -> AsyncTelemetry:
        """This device's telemetry, with its outbox at the default path (`TETHER_OUTBOX`, else
        a file per device under `~/.local/share/tether/outbox`). For other options build an
        `AsyncTelemetry(client, ...)` yourself."""
        if self._telemetry is None:
            self._telemetry = AsyncTelemetry(self)
        return self._telemetry

    @property
    def realtime(self) -> AsyncRealtime:
        """The client's realtime socket, opened on first use."""
        self._ensure_open()
        if self._realtime is None:
            self._realtime = AsyncRealtime(self)
        return self._realtime

    @property
    def is_connected(self) -> bool:
        """Whether the realtime socket is open right now."""
        return self._realtime is not None and self._realtime.is_connected

    def get_channel(self, name: str, system: bool = False, consumer: bool = False) -> AsyncChannel:
        """A channel of the organization; `system` and `consumer` make distinct channels."""
        return AsyncChannel(self.realtime, name, system, consumer)

    async def on(self, event: str, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Call `callback(frame)` for resource events: "device:created", "zone:*", "*"."""
        await self.realtime.on(event, callback)

    async def listen_events(self, *events: str) -> AsyncEventStream:
        """Resource events ("device:created", "zone:*", "*") to iterate over or `wait()` for."""
        return await self.realtime.listen_events(*events)

    async def run_forever(self, seconds: float | None = None) -> None:
        """Keep a script alive while callbacks and listeners work (`seconds`: then return)."""
        waited = 0.0
        while not self._closed and (seconds is None or waited < seconds):
            step = 0.2 if seconds is None else min(0.2, seconds - waited)
            await self._run(pause(step))
            waited += step

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _ensure_open(self) -> None:
        if self._closed:
            raise ClientClosedError("This client is closed; create a new one.")

    async def _run(self, flow: Flow[T]) -> T:
        if self._closed:
            flow.close()
        self._ensure_open()
        return await run_async(flow, self._http)

    async def get_auth(self) -> AuthPayload:
        """The authentication payload, signing in or refreshing the token first if needed."""
        self._ensure_open()
        await self._run(self._session.signed_in_flow())
        return self._session.payload()

    async def whoami(self) -> dict[str, Any]:
        """The identity behind this client's credentials, as the server sees it."""
        return await self.get("/api/v1/auth/whoami")  # type: ignore[no-any-return]

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Body | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        raw: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send an authenticated request: `path` is a full URL, an absolute path, or a path
        relative to the API root (or to the project, for a project token). Returns the decoded
        JSON, or bytes with `raw=True`. `content` is bytes or an iterator of chunks (streamed,
        and then never retried)."""
        return await self._run(
            self._session.request_flow(
                method,
                path,
                params=params,
                json_body=json,
                content=content,
                timeout=timeout,
                raw=raw,
                headers=headers,
            )
        )

    async def get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        raw: bool = False,
    ) -> Any:
        return await self.request("GET", path, params=params, timeout=timeout, raw=raw)

    async def get_all(
        self, path: str, params: Mapping[str, Any] | None = None, *, key: str = "results"
    ) -> list[Any]:
        """Every item of a paged list (`key` names the page's list), following `next`."""
        page = await self.get(path, params)
        items: list[Any] = []
        while True:
            items.extend(page[key])
            if not page.get("next"):
                return items
            page = await self.get(page["next"])

    async def post(
        self,
        path: str,
        json: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        raw: bool = False,
    ) -> Any:
        return await self.request("POST", path, params=params, json=json, timeout=timeout, raw=raw)

    async def put(
        self,
        path: str,
        json: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        raw: bool = False,
    ) -> Any:
        return await self.request("PUT", path, params=params, json=json, timeout=timeout, raw=raw)

    async def patch(
        self,
        path: str,
        json: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        raw: bool = False,
    ) -> Any:
        return await self.request("PATCH", path, params=params, json=json, timeout=timeout, raw=raw)

    async def delete(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        raw: bool = False,
    ) -> Any:
        return await self.request("DELETE", path, params=params, timeout=timeout, raw=raw)

    async def __call__(
        self,
        path: str = "",
        params: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        raw: bool = False,
    ) -> Any:
        """Calling the client is a GET."""
        return await self.get(path, params, timeout=timeout, raw=raw)

    async def close(self) -> None:
        """Close the connection pool; any later call raises `ClientClosedError`."""
        if not self._closed:
            if self._telemetry is not None:
                await self._telemetry.close()
            await self.commands.stop()
            await self.twins.stop()
            if self._realtime is not None:
                await self._realtime.close()
            self._closed = True
            _OPEN.discard(self)
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.url} {self._session.credentials.kind} {state}>"
