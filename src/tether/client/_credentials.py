"""Where a client finds its server and credentials.

In order: explicit arguments, then the environment (`TETHER_URL`, `TETHER_TOKEN`,
`TETHER_USERNAME`/`TETHER_PASSWORD`/`TETHER_ORGANIZATION`, `TETHER_DEVICE_ID`/
`TETHER_DEVICE_SECRET`, `TETHER_APP_ID`/`TETHER_API_KEY`), then `~/.netrc` for the server's
host (login and password, sent as HTTP Basic), then the login saved by `tether login`.
"""

from __future__ import annotations

import json
import netrc
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tether._exceptions import ConfigurationError
from tether.client._oauth import OAuthGrant

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Credentials:
    """One way of proving who the client is; `kind` says which fields matter."""

    kind: str = "none"
    token: str | None = None
    username: str | None = None
    password: str | None = None
    organization: str | None = None
    device_id: str | None = None
    device_secret: str | None = None
    app_id: str | None = None
    api_key: str | None = None
    refresh_token: str | None = None
    oauth: OAuthGrant | None = None
    """An app acting for a person (kind "oauth"): its code, or a kept refresh token."""

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.__dict__.items() if v is not None}
        for secret in ("token", "password", "device_secret", "api_key", "refresh_token"):
            if secret in shown:
                shown[secret] = "***"
        return f"Credentials({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(environ.get("TETHER_CONFIG_DIR") or Path(base) / "tether")


def saved_logins_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / "logins.json"


def read_saved_logins(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    path = saved_logins_path(environ)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_saved_logins(logins: dict[str, Any], environ: Mapping[str, str] | None = None) -> Path:
    """Save logins readable by the owner only."""
    path = saved_logins_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(logins, handle, indent=2)
    os.replace(tmp, path)
    return path


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_server(url: str) -> str:
    """What identifies a server among saved logins: `http://localhost:8000`,
    `http://127.0.0.1:8000/` and `HTTP://LOCALHOST:8000` are one server."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    host = "localhost" if host in _LOOPBACK else host
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def saved_login(logins: Mapping[str, Any], url: str) -> tuple[str, dict[str, Any]] | None:
    """The saved login (its key and entry) for the server at `url`, however it was spelled."""
    wanted = same_server(url)
    for key, entry in (logins.get("servers") or {}).items():
        if isinstance(entry, dict) and same_server(key) == wanted:
            return key, entry
    return None


def _from_fields(fields: Mapping[str, str | None], prefix: str = "") -> Credentials | None:
    """Credentials from named fields (arguments, or with `prefix` TETHER_ the environment's
    variables); a ConfigurationError naming what is there when it is not a whole set."""

    def has(*names: str) -> bool:
        return all(fields.get(name) for name in names)

    values = {k: v for k, v in fields.items() if v}
    if has("token"):
        return Credentials(kind="token", token=values["token"])
    if has("username", "password", "organization"):
        return Credentials(
            kind="password",
            username=values["username"],
            password=values["password"],
            organization=values["organization"],
        )
    if has("device_id", "device_secret"):
        return Credentials(
            kind="device", device_id=values["device_id"], device_secret=values["device_secret"]
        )
    if has("app_id", "api_key"):
        return Credentials(kind="app", app_id=values["app_id"], api_key=values["api_key"])
    partial = sorted(f"{prefix}{k}".upper() if prefix else k for k in values if k != "url")
    if partial:
        where = " in the environment" if prefix else ""
        raise ConfigurationError(
            f"Incomplete credentials{where} ({', '.join(partial)}): give a token; username, "
            "password and organization; device_id and device_secret; or app_id and api_key."
        )
    return None


_ENV_FIELDS = (
    "token",
    "username",
    "password",
    "organization",
    "device_id",
    "device_secret",
    "app_id",
    "api_key",
)


def resolve(
    url: str | None,
    arguments: Mapping[str, str | None],
    environ: Mapping[str, str] | None = None,
    netrc_file: str | os.PathLike[str] | None = None,
) -> tuple[str, Credentials]:
    """The server URL and credentials for a new client, following the documented order."""
    environ = os.environ if environ is None else environ
    url = (url or environ.get("TETHER_URL") or "").rstrip("/")
    saved = read_saved_logins(environ)
    if not url and saved.get("default"):
        url = str(saved["default"]).rstrip("/")
    url = url or DEFAULT_URL
    if urlsplit(url).scheme not in {"http", "https"} or not urlsplit(url).hostname:
        raise ConfigurationError(f"{url!r} is not an http(s) URL.")

    found = _from_fields(arguments)
    if found is None:
        found = _from_fields(
            {name: environ.get(f"TETHER_{name.upper()}") for name in _ENV_FIELDS}, "TETHER_"
        )
    if found is None:
        found = _from_netrc(url, netrc_file or environ.get("NETRC"))
    if found is None:
        login = saved_login(saved, url)
        if login is not None and login[1].get("token"):
            found = Credentials(kind="token", token=str(login[1]["token"]))
    return url, found or Credentials()


def _from_netrc(url: str, path: str | os.PathLike[str] | None) -> Credentials | None:
    host = urlsplit(url).hostname or ""
    try:
        entries = netrc.netrc(str(path) if path else None)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return None
    found = entries.authenticators(host)
    if not found:
        return None
    login, _, password = found
    if not login:
        return None
    return Credentials(kind="basic", username=login, password=password or "")
