"""A browser's credential: the console session, an API token kept in an HttpOnly cookie.

The API accepts it in place of an Authorization header only from the console's own pages: a
request that changes something must carry the session's CSRF token in `X-Tether-CSRF` (a
script on another site cannot read it), and a realtime socket must come from the same origin
(browsers send cookies with cross-site socket requests). Reads need no more: another site
cannot read their answers.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

SESSION_COOKIE = "tether_session"
CSRF_HEADER = "x-tether-csrf"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_of(secret: str) -> str:
    """The CSRF token that goes with a session (a hash of its secret token)."""
    return hashlib.sha256(f"tether-console-csrf:{secret}".encode()).hexdigest()[:40]


def session_credential(scope: Any) -> str | None:
    """`Bearer <token>` from the session cookie, when the request may use it; else None."""
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = jar.get(SESSION_COOKIE)
    if morsel is None or not morsel.value:
        return None
    token = morsel.value
    if scope["type"] == "websocket":
        origin = urlsplit(headers.get("origin", "")).netloc
        if not origin or origin != headers.get("host"):
            return None
    elif scope.get("method", "GET") not in _SAFE:
        sent = headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, csrf_of(token)):
            return None
    return f"Bearer {token}"
