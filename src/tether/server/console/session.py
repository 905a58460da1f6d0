"""A person's session in the console, and the API client every page works through.

Signing in makes an API token for the user ("console session", 12 hours), kept in an HttpOnly
cookie: it is revocable like any token (signing out revokes it; deleting the user or changing
the password ends it at once, everywhere), and it appears in the user's token list. Pages act
through the JSON API itself, in-process, with that token: the console can show or do nothing the
API would not let the same user do, and the policy decides in one place.

Every form that changes something carries a CSRF token: a hash of the session's token (which
a script on another site cannot read), or, before there is a session, a random value also set
as a cookie (double submit). Cookies are SameSite=Lax, and Secure when served over TLS.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response

from tether._exceptions import api_error
from tether.server.identity.authn import AUTHENTICATED, authenticate
from tether.server.identity.cookies import SESSION_COOKIE, csrf_of
from tether.server.identity.credentials import Principal
from tether.server.identity.policy import allowed
from tether.server.problems import Problem
from tether.server.state import ServerState

CSRF_COOKIE = "tether_csrf"
"""The signed-out form's double-submit cookie over plain HTTP (a developer's loopback); over
HTTPS it is `__Host-tether_csrf`, which a browser takes only from this very origin over HTTPS,
so a sibling subdomain or a network attacker cannot plant one to sign a victim in as
themselves."""


def csrf_cookie(request: Request[Any, Any, Any]) -> str:
    """The name of the signed-out CSRF cookie for this request's scheme."""
    return f"__Host-{CSRF_COOKIE}" if _secure(request) else CSRF_COOKIE


SESSION_LIFETIME = 12 * 3600


def _secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


class Api:
    """This server's JSON API called in-process: an ASGI request to the same application, as
    the browser's client (its address counts for sign-in limits), signed in as the session
    (whose principal the outer request already authenticated, so the inner one reuses it, and
    a revocation still refuses it); answers decoded, refusals raised as the SDK's errors
    (`tether.APIError` and its tree)."""

    def __init__(
        self,
        request: Request[Any, Any, Any],
        token: str | None = None,
        principal: Principal | None = None,
    ) -> None:
        self._app = request.app
        client = request.client
        self._client = (client.host, client.port) if client else ("127.0.0.1", 0)
        self._headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        self._principal = principal

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        body = b"" if json is None else msgspec.json.encode(json)
        given = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        headers_list = [*self._headers, *given, (b"content-length", str(len(body)).encode())]
        if json is not None:
            headers_list.append((b"content-type", b"application/json"))
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": f"/api/v1/{path.lstrip('/')}",
            "raw_path": f"/api/v1/{path.lstrip('/')}".encode(),
            "root_path": "",
            "query_string": urlencode(params or {}, doseq=True).encode(),
            "headers": headers_list,
            "client": self._client,
            "server": ("console.internal", 80),
        }
        if self._principal is not None:
            scope[AUTHENTICATED] = self._principal
        sent = False
        status = 500
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)  # type: ignore[arg-type]
        answer = b"".join(chunks)
        try:
            decoded = msgspec.json.decode(answer) if answer else None
        except msgspec.DecodeError:
            decoded = None
        if status >= 400:
            raise api_error(status, decoded)
        return decoded

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.call("POST", path, json=body)

    async def delete(self, path: str) -> Any:
        return await self.call("DELETE", path)


def api(request: Request[Any, Any, Any], token: str | Session | None = None) -> Api:
    """The in-process API, anonymous, with a token, or as a session."""
    if isinstance(token, Session):
        return Api(request, token.token, token.principal)
    return Api(request, token)


@dataclass(frozen=True)
class Session:
    """The signed-in person behind a request: their principal and their session's token."""

    principal: Principal
    token: str

    @property
    def csrf(self) -> str:
        return csrf_of(self.token)

    def may(self, resource: str, action: str) -> bool:
        """Whether the policy lets this person take `action` on `resource` (to show or hide
        the control; the API decides again when it is used)."""
        return allowed(self.principal, resource, action)


async def session_of(request: Request[Any, Any, Any]) -> Session | None:
    """The request's session, or None when there is none or it has ended."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    state: ServerState = request.app.state.tether
    try:
        principal = await authenticate(state, f"Bearer {token}")
    except Problem:
        return None
    if principal.type != "user":
        return None
    return Session(principal, token)


async def check_csrf(request: Request[Any, Any, Any], session: Session | None) -> Any:
    """The posted form (`form.get(name)`, `form.getall(name)`), once its CSRF token matches
    the session's (or, signed out, the CSRF cookie's); 403 otherwise."""
    form = await request.form()
    sent = str(form.get("csrf", ""))
    expected = session.csrf if session else request.cookies.get(csrf_cookie(request), "")
    if not expected or not hmac.compare_digest(sent, expected):
        detail = "The form's CSRF token is missing or wrong; reload the page."
        raise Problem(403, detail, code="csrf")
    return form


def pre_session_csrf(request: Request[Any, Any, Any]) -> str:
    """The double-submit token of a signed-out form: the cookie's, or a new one."""
    return request.cookies.get(csrf_cookie(request)) or secrets.token_urlsafe(24)


def with_pre_session_csrf(
    request: Request[Any, Any, Any], response: Response[Any], value: str
) -> Response[Any]:
    response.set_cookie(
        csrf_cookie(request),
        value,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    return response


def start_session(
    request: Request[Any, Any, Any], response: Response[Any], token: str
) -> Response[Any]:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_LIFETIME,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(csrf_cookie(request), path="/")
    return response


def end_session(response: Response[Any]) -> Response[Any]:
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
