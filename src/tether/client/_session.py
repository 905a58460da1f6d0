"""The I/O-free core of a client: URLs, authentication state and the request protocol.

`Session.request_flow` is the one place a request is built, authenticated, retried and turned
into a result or an SDK error. Tokens are obtained on first use and refreshed before they
expire or after a 401; a device allowed to pair falls back to pairing when it has no
credentials or they are refused.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import threading
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tether._exceptions import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    NetworkError,
    PairingError,
    api_error,
    unexpected_answer,
)
from tether.client._config import Retries, retry_delay
from tether.client._credentials import Credentials
from tether.client._flows import Flow, Renew, Send, Sleep
from tether.client._oauth import OAuthGrant

Body = bytes | Iterable[bytes] | AsyncIterable[bytes]
"""A request body: bytes, or chunks streamed from a file."""

logger = logging.getLogger("tether")

API_ROOT = "/api/v1"
_REFRESH_MARGIN = dt.timedelta(seconds=30)


class UseClientDefault:
    """The type of `USE_CLIENT_DEFAULT`: a request's timeout when none is given, which is the
    client's (`Client(timeout=...)`), so that `timeout=None` can mean no timeout at all, as in
    httpx."""

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT = UseClientDefault()
Timeout = float | None | UseClientDefault
"""A request's timeout in seconds; None waits as long as it takes."""


@dataclass(frozen=True)
class PairingCode:
    """What a pairing device shows its user: the code and where to approve it."""

    user_code: str
    verification_uri: str
    expires_in: int


@dataclass(frozen=True)
class AuthPayload:
    """The current authentication: token, identity and expiry (None for static credentials),
    and the refresh token of a sign-in (to keep, for an app acting for a person)."""

    token: str | None = field(repr=False)
    identity: dict[str, Any]
    expires_at: dt.datetime | None
    refresh_token: str | None = field(default=None, repr=False)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class Session:
    """Authentication state and the flows that use it; shared by both twins."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        timeout: float,
        retries: Retries,
        allow_pairing: bool = False,
        on_pairing_code: Callable[[PairingCode], None] | None = None,
        pairing_name: str | None = None,
        pairing_organization: str | None = None,
        failover_urls: Sequence[str] = (),
        on_tokens: Callable[[AuthPayload], None] | None = None,
    ) -> None:
        self.url = url
        self.servers = [url, *(u.rstrip("/") for u in failover_urls if u.rstrip("/") != url)]
        """The cluster's servers this client may use, the one in use first among equals."""
        self.origin = _origin(url)
        self.credentials = credentials
        self.timeout = timeout
        self.retries = retries
        self.allow_pairing = allow_pairing
        self.on_pairing_code = on_pairing_code
        self.pairing_name = pairing_name
        self.pairing_organization = pairing_organization
        self.access_token: str | None = None
        self.refresh_token: str | None = credentials.refresh_token or (
            credentials.oauth.refresh_token if credentials.oauth else None
        )
        self.on_tokens = on_tokens
        """Told each new access and refresh token (an app keeps the refresh token)."""
        self.expires_at: dt.datetime | None = None
        self.identity: dict[str, Any] | None = None
        self.lock = threading.Lock()
        self.async_lock = asyncio.Lock()
        """Held while signing in, by the blocking and the asyncio runner (see `Renew`)."""

    # URLs ----------------------------------------------------------------------------------

    @property
    def project_id(self) -> str | None:
        return (self.identity or {}).get("project_id")

    def resolve(self, path: str) -> str:
        """A full URL for a full URL, an absolute path, or a path relative to the API root
        (or to the project, for a project-bound credential)."""
        if path.startswith(("http://", "https://")):
            return path
        if path.startswith("/"):
            return self.url + path
        root = API_ROOT
        if self.project_id and not path.startswith("projects/"):
            root = f"{API_ROOT}/projects/{self.project_id}"
        return f"{self.url}{root}/{path}" if path else f"{self.url}{root}"

    def build(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: Body | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        authenticated: bool = True,
        extra_headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        headers = {"Accept": "application/json", **(extra_headers or {})}
        if authenticated and _origin(url) == self.origin:
            header = self.authorization()
            if header:
                headers["Authorization"] = header
        request = httpx.Request(
            method, url, params=_clean(params), json=json_body, content=content, headers=headers
        )
        chosen = self.timeout if isinstance(timeout, UseClientDefault) else timeout
        request.extensions["timeout"] = httpx.Timeout(chosen).as_dict()
        return request

    # Authentication state ------------------------------------------------------------------

    def authorization(self) -> str | None:
        if self.access_token:
            return f"Bearer {self.access_token}"
        kind = self.credentials.kind
        if kind == "token":
            return f"Bearer {self.credentials.token}"
        if kind == "basic":
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    @property
    def uses_grants(self) -> bool:
        return self.credentials.kind in {"password", "device", "app", "oauth"} or self.allow_pairing

    def needs_login(self) -> bool:
        if self.identity is None:
            return True
        if not self.uses_grants:
            return False
        if self.access_token is None or self.expires_at is None:
            return True
        return self.expires_at - _REFRESH_MARGIN <= dt.datetime.now(dt.UTC)

    def payload(self) -> AuthPayload:
        token = self.access_token or self.credentials.token
        return AuthPayload(
            token=token,
            identity=dict(self.identity or {}),
            expires_at=self.expires_at,
            refresh_token=self.refresh_token,
        )

    def _grant(self) -> dict[str, str] | None:
        c = self.credentials
        if c.kind == "password":
            return {
                "grant_type": "password",
                "username": c.username or "",
                "password": c.password or "",
                "organization": c.organization or "",
            }
        if c.kind == "device":
            return {
                "grant_type": "device",
                "device_id": c.device_id or "",
                "device_secret": c.device_secret or "",
            }
        if c.kind == "app":
            return {"grant_type": "app", "app_id": c.app_id or "", "api_key": c.api_key or ""}
        if c.kind == "oauth" and c.oauth is not None and c.oauth.code:
            return {
                "grant_type": "authorization_code",
                "code": c.oauth.code,
                "code_verifier": c.oauth.code_verifier or "",
                "redirect_uri": c.oauth.redirect_uri or "",
                "client_id": c.oauth.client_id,
            }
        return None

    def _accept_tokens(self, body: dict[str, Any]) -> None:
        self.access_token = body["access_token"]
        self.refresh_token = body.get("refresh_token")
        self.expires_at = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
        self.identity = body.get("identity") or {}
        oauth = self.credentials.oauth
        if oauth is not None and self.refresh_token:
            kept = OAuthGrant(oauth.client_id, refresh_token=self.refresh_token)
            self.credentials = Credentials(kind="oauth", oauth=kept)
        if self.on_tokens is not None:
            self.on_tokens(self.payload())

    # Flows ---------------------------------------------------------------------------------

    def _token_flow(self, grant: dict[str, str]) -> Flow[httpx.Response]:
        request = self.build(
            "POST", self.resolve("/api/v1/auth/token"), json_body=grant, authenticated=False
        )
        response: httpx.Response = yield from self._send_with_retries(request)
        return response

    def signed_in_flow(self) -> Flow[None]:
        """Sign in (or refresh) first if the token is missing or about to expire, once for
        all the requests that find it so at the same time."""
        if self.needs_login():
            yield Renew(self, self.access_token)

    def login_flow(self) -> Flow[None]:
        """Get (or refresh) a token, or learn the identity of a static credential."""
        if not self.uses_grants:
            request = self.build("GET", self.resolve("/api/v1/auth/whoami"))
            response = yield from self._send_with_retries(request)
            self.identity = _document(response)
            return
        if self.refresh_token:
            response = yield from self._token_flow(
                {"grant_type": "refresh_token", "refresh_token": self.refresh_token}
            )
            if response.status_code == 200:
                self._accept_tokens(_document(response))
                logger.debug("refreshed the access token")
                return
            self.refresh_token = None
        grant = self._grant()
        if grant is not None:
            response = yield from self._token_flow(grant)
            if response.status_code == 200:
                self._accept_tokens(_document(response))
                logger.debug("signed in as %s", (self.identity or {}).get("name"))
                return
            if not (self.allow_pairing and response.status_code == 401):
                raise _error(response)
            logger.info("device credentials refused; falling back to pairing")
        if self.credentials.kind == "oauth":
            raise AuthenticationError(
                "The app's authorization has ended (its refresh token was refused): send the "
                "person to OAuthFlow(...).authorization_url again.",
                status=401,
                code="unauthenticated",
            )
        if not self.allow_pairing:
            raise AuthenticationError(
                "No credentials: give a token, user, device or app credentials, or allow pairing.",
                status=401,
                code="unauthenticated",
            )
        yield from self.pairing_flow()

    def pairing_flow(self) -> Flow[None]:
        """Ask for a pairing code, show it, and poll until a user approves it."""
        asked = {"name": self.pairing_name, "organization": self.pairing_organization}
        body = {k: v for k, v in asked.items() if v}
        request = self.build(
            "POST", self.resolve("/api/v1/pairing"), json_body=body, authenticated=False
        )
        response = yield from self._send_with_retries(request)
        started = _document(response)
        code = PairingCode(
            started["user_code"], started["verification_uri"], int(started["expires_in"])
        )
        if self.on_pairing_code is not None:
            self.on_pairing_code(code)
        else:
            logger.warning(
                "pairing: approve code %s (tether pairing approve %s)",
                code.user_code,
                code.user_code,
            )
        grant = {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": started["device_code"],
        }
        while True:
            yield Sleep(float(started.get("interval", 2)))
            response = yield from self._token_flow(grant)
            if response.status_code == 428:
                continue
            if response.status_code == 200:
                body = _decode(response)
                self._accept_tokens(body)
                self.credentials = Credentials(
                    kind="device", device_id=body["device_id"], device_secret=body["device_secret"]
                )
                self.allow_pairing = False
                return
            error = _error(response)
            raise PairingError(f"Pairing failed: {error.message}") from error

    def _fail_over(self, exc: NetworkError, tried: int) -> bool:
        """Move to the next server of the cluster when this one refused the connection (so
        nothing reached it, and any request may go elsewhere), unless every server has been
        tried; whether it moved. The client then stays on the server that answers."""
        if tried >= len(self.servers) - 1 or not isinstance(exc.__cause__, httpx.ConnectError):
            return False
        old = self.url
        self.url = self.servers[(self.servers.index(old) + 1) % len(self.servers)]
        self.origin = _origin(self.url)
        logger.warning("%s refused the connection; trying %s", old, self.url)
        return True

    def _moved(self, request: httpx.Request, old: str) -> httpx.Request:
        """`request` (with a body in memory) sent to the server now in use instead of `old`."""
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"host"]
        url = str(request.url)
        moved = self.url + url[len(old) :] if url.startswith(old) else url
        return httpx.Request(
            request.method,
            moved,
            headers=headers,
            content=request.content,
            extensions=request.extensions,
        )

    def _send_with_retries(self, request: httpx.Request) -> Flow[httpx.Response]:
        attempt = 0
        moved = 0
        while True:
            try:
                response: httpx.Response = yield Send(request)
            except NetworkError as exc:
                old = self.url
                if self._fail_over(exc, moved):
                    request, moved = self._moved(request, old), moved + 1
                    continue
                delay = retry_delay(self.retries, attempt, request.method, network_error=True)
                if delay is None:
                    raise
                logger.info(
                    "retrying %s %s in %.2fs after %s",
                    request.method,
                    request.url,
                    delay,
                    exc.message,
                )
            else:
                delay = retry_delay(
                    self.retries,
                    attempt,
                    request.method,
                    status=response.status_code,
                    retry_after=response.headers.get("Retry-After"),
                )
                if delay is None:
                    return response
                logger.info(
                    "retrying %s %s in %.2fs after HTTP %d",
                    request.method,
                    request.url,
                    delay,
                    response.status_code,
                )
            attempt += 1
            moved = 0
            yield Sleep(delay)

    def request_flow(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: Body | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        raw: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Flow[Any]:
        """Send one API request with authentication and retries; the decoded result.

        A streamed body (an iterator of chunks) can be sent once only: such a request is not
        retried, since a second attempt would send an empty body."""
        yield from self.signed_in_flow()
        replayable = content is None or isinstance(content, bytes)
        renewed = False
        moved = 0
        while True:
            sent_with = self.access_token
            request = self.build(
                method.upper(),
                self.resolve(path),
                params=params,
                json_body=json_body,
                content=content,
                timeout=timeout,
                extra_headers=headers,
            )
            if replayable:
                response = yield from self._send_with_retries(request)
            else:
                try:
                    response = yield Send(request)
                except NetworkError as exc:
                    if not self._fail_over(exc, moved):
                        raise
                    moved += 1
                    continue
            if response.status_code == 401 and self.uses_grants and not renewed and replayable:
                renewed = True
                yield Renew(self, sent_with)
                continue
            if response.is_error:
                raise _error(response)
            if raw:
                return response.content
            return _decode(response)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    if not isinstance(params, Mapping):
        raise ConfigurationError(
            f"params must be a mapping of names to values, not {type(params).__name__}"
        )
    cleaned: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        cleaned[key] = str(value).lower() if isinstance(value, bool) else value
    return cleaned


def _decode(response: httpx.Response, raise_for_status: bool = False) -> Any:
    """A JSON answer decoded, by its Content-Type; any other answer's bytes as they came (a
    text file holding `12345` stays b"12345")."""
    if raise_for_status and response.is_error:
        raise _error(response)
    if response.status_code == 204 or not response.content:
        return None
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return response.content
    try:
        return json.loads(response.content)
    except ValueError:
        raise unexpected_answer(response.status_code, "JSON that does not parse") from None


def _document(response: httpx.Response) -> dict[str, Any]:
    """A JSON object the API answered (an error raised, anything else refused)."""
    decoded = _decode(response, raise_for_status=True)
    if not isinstance(decoded, dict):
        raise unexpected_answer(response.status_code, response.headers.get("content-type", "?"))
    return decoded


def _error(response: httpx.Response) -> APIError:
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    error = api_error(response.status_code, body)
    logger.debug("%s %s -> %s", response.request.method, response.request.url, error)
    return error
