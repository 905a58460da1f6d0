"""The server's settings, declared once.

Every setting has a name, a type, a default and a help line. The same list feeds the
`TETHER_*` environment variables, the `tether serve` flags and `docs/configuration.md`, so
they cannot drift apart. Bad values fail at start naming the key; secrets print masked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Setting:
    """One configurable value of the server."""

    name: str
    type: type
    default: Any
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return f"TETHER_{self.name.upper()}"

    def parse(self, raw: Any) -> Any:
        if raw is None or isinstance(raw, self.type):
            return raw
        text = str(raw).strip()
        try:
            if self.type is bool:
                lowered = text.lower()
                if lowered in {"1", "true", "yes", "on"}:
                    return True
                if lowered in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(text)
            if self.type is Path:
                return Path(text).expanduser()
            return self.type(text)
        except ValueError:
            raise SettingsError(
                f"{self.env}: {text!r} is not a valid {self.type.__name__}"
            ) from None


SETTINGS: tuple[Setting, ...] = (
    Setting("data", Path, Path("tether-data"), "Folder that holds the SQLite database and blobs."),
    Setting("host", str, "127.0.0.1", "Interface to listen on."),
    Setting("port", int, 8000, "TCP port to listen on."),
    Setting(
        "forwarded_allow_ips",
        str,
        "127.0.0.1",
        "Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed, as "
        "comma-separated addresses or networks (* for any): the client address they give is "
        "the one sign-in limits count. Set it to the proxy's address behind a proxy.",
    ),
    Setting(
        "workers",
        int,
        0,
        "Server processes on this machine, sharing the port. 0: one per core on PostgreSQL "
        "with Redis, else one. Several need PostgreSQL (SQLite takes one writer at a time) and "
        "Redis (realtime crosses processes through it).",
    ),
    Setting(
        "database_url",
        str,
        None,
        "SQLAlchemy URL of the database; default: SQLite (WAL) in the data folder. "
        "Use postgresql://user@host/db to share one database between servers.",
        secret=True,
    ),
    Setting(
        "database_pool_size",
        int,
        10,
        "PostgreSQL connections per server process for reads, and as many for writes (so 20 a "
        "process); requests beyond that wait for a free one rather than open and close new ones.",
    ),
    Setting(
        "database_wait",
        float,
        30.0,
        "Seconds a request waits for a free database connection before it is answered 503 "
        "with Retry-After.",
    ),
    Setting(
        "read_pool_size",
        int,
        4,
        "SQLite: threads (each with its own connection) that run reads off the event loop.",
    ),
    Setting(
        "read_timeout",
        float,
        10.0,
        "Longest a read may run, in seconds; past it the request gets 422 query_timeout.",
    ),
    Setting(
        "blobs_url",
        str,
        None,
        "Where file, content and package bytes live: default the data folder's blobs/; "
        "s3://BUCKET/PREFIX for an S3-compatible object store, which every server of a "
        "cluster must share.",
    ),
    Setting(
        "s3_endpoint",
        str,
        None,
        "URL of an S3-compatible store other than AWS (MinIO, Ceph RGW, Garage...); plain "
        "http:// is allowed for a store on the same host or network.",
    ),
    Setting("s3_region", str, "us-east-1", "Region of the S3 bucket."),
    Setting(
        "s3_access_key_id",
        str,
        None,
        "S3 access key id; default: the AWS_* environment, as AWS tools read it.",
    ),
    Setting("s3_secret_access_key", str, None, "S3 secret access key.", secret=True),
    Setting("redis_url", str, None, "Redis URL for pub/sub across several server processes.", True),
    Setting(
        "secret_key",
        str,
        None,
        "Key that signs access tokens; default: generated once and kept in the database, "
        "sealed under the master key.",
        secret=True,
    ),
    Setting(
        "master_key",
        str,
        None,
        "Key that seals the secrets kept in the database (the token-signing key, server-held "
        "package signing keys); default: the file master.key in the data folder, made on first "
        "start. Every server of a cluster needs the same one.",
        secret=True,
    ),
    Setting("access_token_ttl", int, 900, "Lifetime of an access token, in seconds."),
    Setting("refresh_token_ttl", int, 30 * 86400, "Lifetime of a refresh token, in seconds."),
    Setting("admin_username", str, None, "Username of the first admin, created on first start."),
    Setting("admin_password", str, None, "Password of the first admin (default: generated).", True),
    Setting("admin_organization", str, None, "Organization of the first admin (default: 'main')."),
    Setting("page_size", int, 50, "Default number of results in a page of a list."),
    Setting("max_page_size", int, 500, "Largest page a client may ask for."),
    Setting("max_data_value", int, 16 * 1024 * 1024, "Largest data item value, in bytes."),
    Setting(
        "max_large_bodies",
        int,
        4,
        "How many large JSON bodies (data items, feed entries) are read at once; more wait.",
    ),
    Setting("login_max_failures", int, 5, "Failed logins allowed per identity and window."),
    Setting("login_window", int, 60, "Window of the failed-login limit, in seconds."),
    Setting(
        "login_max_per_address",
        int,
        100,
        "Sign-in attempts allowed per client address and window (successes are given back).",
    ),
    Setting("max_file_size", int, 10 * 1024**3, "Largest file an upload may store, in bytes."),
    Setting(
        "blob_grace",
        int,
        600,
        "Seconds a blob file that no row records yet is kept (an upload in another process is "
        "about to record it); older ones, left by a server killed mid-upload, are removed.",
    ),
    Setting(
        "max_package_size",
        int,
        4 * 1024**3,
        "Largest package version a publish may store, in bytes.",
    ),
    Setting("telemetry_max_points", int, 10_000, "Most telemetry points one push may carry."),
    Setting(
        "telemetry_retention_days",
        int,
        0,
        "Delete telemetry points received more than this many days ago; 0 keeps them forever.",
    ),
    Setting(
        "events_retention_days",
        int,
        30,
        "Keep the journal of events (GET /api/v1/events, the console's recent events) this "
        "many days.",
    ),
    Setting(
        "realtime_compression",
        bool,
        False,
        "Offer permessage-deflate on realtime sockets: fewer bytes on slow links, more CPU per "
        "frame and socket on the server.",
    ),
    Setting("pairing_ttl", int, 600, "How long a pairing code stays valid, in seconds."),
    Setting("log_level", str, "info", "Log level of the server: debug, info, warning, error."),
    Setting(
        "access_log",
        bool,
        True,
        "Log one line per HTTP request (address, method, path, status) at level info.",
    ),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Resolved settings: defaults, then environment, then explicit overrides."""

    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env, setting.default)
            values[setting.name] = setting.parse(raw)
        for name, raw in (overrides or {}).items():
            if name not in _BY_NAME:
                raise SettingsError(f"unknown setting {name!r}")
            if raw is not None:
                values[name] = _BY_NAME[name].parse(raw)
        settings = cls(values)
        settings.validate()
        return settings

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def validate(self) -> None:
        for name in (
            "port",
            "database_pool_size",
            "database_wait",
            "read_pool_size",
            "read_timeout",
            "access_token_ttl",
            "refresh_token_ttl",
            "page_size",
            "max_page_size",
            "max_data_value",
            "login_max_failures",
            "login_window",
            "pairing_ttl",
            "telemetry_max_points",
            "max_file_size",
            "max_package_size",
            "events_retention_days",
        ):
            if self.values[name] <= 0:
                raise SettingsError(f"{_BY_NAME[name].env}: must be positive")
        if self.values["workers"] < 0:
            raise SettingsError("TETHER_WORKERS: must be 0 (automatic) or more")
        if self.values["workers"] > 1 and not self.values["database_url"]:
            raise SettingsError(
                "TETHER_WORKERS: several workers need PostgreSQL (TETHER_DATABASE_URL); SQLite "
                "serves from one process"
            )
        if self.values["workers"] > 1 and not self.values["redis_url"]:
            raise SettingsError(
                "TETHER_WORKERS: several workers need Redis (TETHER_REDIS_URL), which carries "
                "realtime between them"
            )
        if self.values["telemetry_retention_days"] < 0:
            raise SettingsError("TETHER_TELEMETRY_RETENTION_DAYS: must be 0 or more")
        if self.values["port"] > 65535:
            raise SettingsError("TETHER_PORT: must be at most 65535")
        if self.values["page_size"] > self.values["max_page_size"]:
            raise SettingsError("TETHER_PAGE_SIZE: must not exceed TETHER_MAX_PAGE_SIZE")
        if self.values["log_level"].lower() not in {"debug", "info", "warning", "error"}:
            raise SettingsError("TETHER_LOG_LEVEL: must be debug, info, warning or error")

    def environment(self) -> dict[str, str]:
        """These settings as `TETHER_*` variables, for server processes started from them."""
        shown = {}
        for setting in SETTINGS:
            value = self.values[setting.name]
            if value is None:
                continue
            shown[setting.env] = str(value).lower() if isinstance(value, bool) else str(value)
        return shown

    @property
    def process_count(self) -> int:
        """How many server processes to run: `workers`, or when 0, one per core where the
        back end allows several (PostgreSQL and Redis), else one."""
        if self.values["workers"]:
            return int(self.values["workers"])
        if self.values["database_url"] and self.values["redis_url"]:
            return os.cpu_count() or 1
        return 1

    @property
    def resolved_database_url(self) -> str:
        """The database URL with an async driver, defaulting to SQLite in the data folder."""
        url: str | None = self.values["database_url"]
        if not url:
            path = Path(self.values["data"]).resolve() / "tether.db"
            return f"sqlite+aiosqlite:///{path}"
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    def describe(self) -> dict[str, str]:
        """Every setting's value for display, with secrets masked."""
        shown: dict[str, str] = {}
        for setting in SETTINGS:
            value = self.values[setting.name]
            if setting.secret and value:
                shown[setting.name] = "********"
            else:
                shown[setting.name] = "" if value is None else str(value)
        return shown
