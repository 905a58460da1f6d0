"""Secrets, their hashes and signed access tokens.

Passwords are chosen by people and get argon2id. Device secrets, API keys, API tokens and
refresh tokens are 256-bit random values that the server makes, so a SHA-256 digest is as
strong as a slow hash and keeps per-request authentication cheap.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

API_TOKEN_PREFIX = "tth_"
REFRESH_TOKEN_PREFIX = "ttr_"
_ISSUER = "tether"
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for an unknown user, made on first need: making it costs
    0.1 s, which every process start paid at import."""
    return _hasher.hash("tether-dummy-password")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def digest_matches(secret: str, stored: str | None) -> bool:
    """Constant-time check of a secret against its stored digest (False when none is stored)."""
    return hmac.compare_digest(digest(secret), stored or "0" * 64)


def make_prefixed(prefix: str, row_id: str) -> str:
    """An opaque token that names its row (`prefix + id + '.' + secret`), for O(1) lookup."""
    return f"{prefix}{row_id.replace('-', '')}.{new_secret()}"


def split_prefixed(prefix: str, token: str) -> str | None:
    """The row id inside a prefixed token, or None when the token has the wrong shape."""
    if not token.startswith(prefix) or "." not in token:
        return None
    raw = token[len(prefix) :].split(".", 1)[0]
    if len(raw) != 32 or any(c not in "0123456789abcdef" for c in raw):
        return None
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password: str, stored: str | None) -> bool:
    """Check a password; an unknown user costs the same time as a wrong password."""

    def check() -> bool:
        try:
            return bool(_hasher.verify(stored or _dummy_hash(), password)) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, device, app or API token, always inside one organization.

    `role` is a user's role (admin, member, viewer); devices and apps are their own kind.
    `issued_at` and `session_id` say when and in which sign-in the credential was issued, so a
    later revocation of the principal or of its session can refuse it."""

    type: str
    id: str
    org_id: str
    name: str
    read_only: bool = False
    project_id: str | None = None
    role: str = "member"
    is_superuser: bool = False
    token_id: str | None = None
    issued_at: float = 0.0
    session_id: str | None = None
    client_id: str | None = None
    """The app a person let act for them through OAuth, when this credential came that way:
    it may not mint credentials or change what outlives the app (`Rule.delegable`)."""

    @property
    def is_admin(self) -> bool:
        return self.type == "user" and self.role == "admin"

    @classmethod
    def of_user(cls, row: Any, **narrowed: Any) -> Principal:
        """A user from its row (`id`, `org_id`, `username`, `role`, `is_superuser`); an API
        token passes its narrowing (`read_only`, `project_id`, `token_id`)."""
        return cls(
            type="user",
            id=row.id,
            org_id=row.org_id,
            name=row.username,
            role=row.role,
            is_superuser=bool(row.is_superuser) and not narrowed,
            **narrowed,
        )

    @classmethod
    def of_resource(cls, row: Any) -> Principal:
        """A device or app from its resource row (`id`, `org_id`, `kind`, `name`,
        `read_only`, `project_id`)."""
        return cls(
            type=row.kind,
            id=row.id,
            org_id=row.org_id,
            name=row.name,
            read_only=bool(row.read_only),
            project_id=row.project_id,
            role=row.kind,
        )

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "sub": self.id,
            "typ": self.type,
            "org": self.org_id,
            "name": self.name,
            "rol": self.role,
        }
        if self.read_only:
            claims["ro"] = True
        if self.project_id:
            claims["prj"] = self.project_id
        if self.is_superuser:
            claims["su"] = True
        if self.session_id:
            claims["sid"] = self.session_id
        if self.client_id:
            claims["cid"] = self.client_id
        return claims

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        return cls(
            type=claims["typ"],
            id=claims["sub"],
            org_id=claims["org"],
            name=claims["name"],
            read_only=bool(claims.get("ro")),
            project_id=claims.get("prj"),
            role=claims["rol"],
            is_superuser=bool(claims.get("su")),
            issued_at=float(claims["iat"]),
            session_id=claims.get("sid"),
            client_id=claims.get("cid"),
        )


class AccessTokens:
    """Short-lived signed access tokens (JWT, HS256) carrying the principal.

    A token verified once is remembered until it expires (a bounded map from the token string),
    so a client's every request does not pay for the signature check again."""

    def __init__(self, key: str, ttl: int, remembered: int = 10_000) -> None:
        self._key = key
        self._key_bytes = key.encode()
        self.ttl = ttl
        self._remembered = remembered
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, principal: Principal, now: dt.datetime) -> tuple[str, dt.datetime]:
        expires = now + dt.timedelta(seconds=self.ttl)
        claims = principal.claims() | {
            "iss": _ISSUER,
            "iat": now.timestamp(),
            "exp": expires,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), expires

    def grant(self, subject: str, ttl: int) -> str:
        """A capability for `subject` (a string naming who may do what), valid `ttl` seconds:
        the expiry and an HMAC of both under the server key."""
        expires = str(int(time.time()) + ttl)
        return f"{expires}.{self._grant_mac(expires, subject)}"

    def granted(self, grant: str, subject: str) -> bool:
        """Whether `grant` was issued for `subject` and has not expired."""
        expires, _, mac = grant.partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(mac, self._grant_mac(expires, subject))

    def _grant_mac(self, expires: str, subject: str) -> str:
        message = f"{expires}:{subject}".encode()
        return hmac.digest(self._key_bytes, message, "sha256").hex()[:32]

    def verify(self, token: str) -> Principal | None:
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires:
                return principal
            del self._verified[token]
            return None
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
            principal = Principal.from_claims(claims)
        except (jwt.PyJWTError, KeyError):
            return None
        if len(self._verified) >= self._remembered:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, float(claims["exp"]))
        return principal
