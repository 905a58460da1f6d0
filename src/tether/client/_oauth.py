"""The app side of OAuth 2.0 with PKCE, with no I/O: the URL to send a person to, and the grant
a client signs in with once they come back.

    flow = tether.OAuthFlow(URL, client_id=APP_ID, redirect_uri="http://127.0.0.1:8765/cb")
    webbrowser.open(flow.authorization_url)
    ...  # the browser comes back to the redirect URI
    client = tether.Client(URL, oauth=flow.grant(callback_url), on_tokens=save)

The client exchanges the code on first use and refreshes its tokens itself; `on_tokens` hears
each new pair, so the app can keep the latest refresh token and later sign in with
`tether.OAuthGrant(APP_ID, refresh_token=saved)` without asking the person again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

from tether._exceptions import AuthorizationError

SCOPES = ("read", "write")


@dataclass(frozen=True)
class OAuthGrant:
    """What a client signs in with as an app acting for a person: the code the person's
    browser brought back (with the PKCE verifier and redirect URI it was asked with), or a
    refresh token kept from an earlier sign-in."""

    client_id: str
    code: str | None = field(default=None, repr=False)
    code_verifier: str | None = field(default=None, repr=False)
    redirect_uri: str | None = None
    refresh_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not (self.refresh_token or (self.code and self.code_verifier and self.redirect_uri)):
            raise ValueError(
                "An OAuthGrant needs a refresh_token, or a code with its code_verifier and "
                "redirect_uri (OAuthFlow.grant makes one)."
            )


class OAuthFlow:
    """One authorization request of a registered app (its id is the app's id; its redirect URI
    one of the app's `redirect_uris`): a fresh PKCE verifier and `state` each time."""

    def __init__(
        self,
        url: str,
        client_id: str,
        redirect_uri: str,
        scope: str = "read",
        *,
        state: str | None = None,
        code_verifier: str | None = None,
    ) -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope is one of {', '.join(SCOPES)}")
        self.url = url.rstrip("/")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.scope = scope
        self.state = state or secrets.token_urlsafe(24)
        self.code_verifier = code_verifier or secrets.token_urlsafe(64)

    @property
    def code_challenge(self) -> str:
        """The verifier's S256 challenge (RFC 7636)."""
        hashed = hashlib.sha256(self.code_verifier.encode()).digest()
        return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode()

    @property
    def authorization_url(self) -> str:
        """Where to send the person: the console's consent page for this request."""
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.url}/oauth/authorize?{urlencode(query)}"

    def grant(self, callback: str) -> OAuthGrant:
        """The grant from the URL the browser came back to (or its query string);
        `AuthorizationError` when the person denied it, the server refused the request, or the
        `state` is not this request's (a forged callback)."""
        query = parse_qs(urlsplit(callback).query if "://" in callback else callback.lstrip("?"))
        answer = {name: values[0] for name, values in query.items() if values}
        if "error" in answer:
            raise AuthorizationError(answer["error"], answer.get("error_description", ""))
        if not hmac.compare_digest(answer.get("state", ""), self.state):
            raise AuthorizationError("invalid_state", "The callback's state is not this request's.")
        if not answer.get("code"):
            raise AuthorizationError("invalid_request", "The callback carries no code.")
        return OAuthGrant(
            self.client_id,
            code=answer["code"],
            code_verifier=self.code_verifier,
            redirect_uri=self.redirect_uri,
        )
