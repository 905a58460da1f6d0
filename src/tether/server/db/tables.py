"""The database schema, shared by SQLite and PostgreSQL.

Every row belongs to one organization; queries are always scoped by `org_id`. Ids are
time-ordered UUIDs, so keyset pagination by id follows creation order. JSON documents are
stored as text encoded by msgspec, which keeps the hot read path free of re-encoding.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from tether.server.db.jsonpath import indexed_field

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC, on SQLite too."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value  # type: ignore[no-any-return]

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        """On SQLite, parse the stored text with `fromisoformat` (C) rather than the generic
        regular expression: timestamps are on every row of every page."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def parse(value: str | None) -> dt.datetime | None:
            if value is None:
                return None
            return dt.datetime.fromisoformat(value + "+00:00")

        return parse


def _id(name: str = "id", **kwargs: Any) -> sa.Column[str]:
    return sa.Column(name, sa.String(36), **kwargs)


def _org() -> sa.Column[str]:
    return sa.Column(
        "org_id",
        sa.String(36),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    )


def _created() -> sa.Column[dt.datetime]:
    return sa.Column("created_at", UTCDateTime(), nullable=False)


server_state = sa.Table(
    "server_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

organizations = sa.Table(
    "organizations",
    metadata,
    _id(primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    _created(),
)

users = sa.Table(
    "users",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("username", sa.String(100), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("is_superuser", sa.Boolean, nullable=False, default=False),
    _created(),
    sa.UniqueConstraint("org_id", "username", name="uq_users_org_username"),
)

resources = sa.Table(
    "resources",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("kind", sa.String(20), nullable=False),
    _id("project_id", nullable=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    _id("location_id", nullable=True),
    _id("experience_id", nullable=True),
    _id("parent_id", nullable=True),
    sa.Column("secret_hash", sa.String(64), nullable=True),
    sa.Column("read_only", sa.Boolean, nullable=True),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("seen_at", UTCDateTime(), nullable=True),
    sa.Index("ix_resources_org_kind_id", "org_id", "kind", "id"),
    sa.Index("ix_resources_seen", "org_id", "kind", "seen_at"),
    sa.Index("ix_resources_location", "location_id"),
    sa.Index("ix_resources_experience", "experience_id"),
    sa.Index("ix_resources_parent", "parent_id"),
    sa.Index("ix_resources_org_kind_name", "org_id", "kind", "name", "id"),
)
sa.Index(
    "ix_resources_subtype",
    resources.c.org_id,
    resources.c.kind,
    indexed_field(resources.c.document, "subtype"),
    resources.c.id,
)
"""Finding resources by subtype, a page at a time in id order (`resources.documents`)."""

zone_members = sa.Table(
    "zone_members",
    metadata,
    sa.Column(
        "zone_id",
        sa.String(36),
        sa.ForeignKey("resources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "member_id",
        sa.String(36),
        sa.ForeignKey("resources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Index("ix_zone_members_member", "member_id"),
)

feed_entries = sa.Table(
    "feed_entries",
    metadata,
    _id(primary_key=True),
    sa.Column(
        "feed_id", sa.String(36), sa.ForeignKey("resources.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("value", sa.Text, nullable=False),
    _created(),
    sa.Index("ix_feed_entries_feed_id", "feed_id", "id"),
)

data_items = sa.Table(
    "data_items",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("scope", sa.String(36), nullable=False),
    sa.Column("group", sa.String(200), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("org_id", "scope", "group", "key", name="uq_data_items_address"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column(
        "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("read_only", sa.Boolean, nullable=False),
    _id("project_id", nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    _created(),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("principal_type", sa.String(10), nullable=False),
    sa.Column("principal_id", sa.String(36), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    _id("family_id", nullable=False),
    _created(),
    sa.Column("read_only", sa.Boolean, nullable=True),
    _id("client_id", nullable=True),
    sa.Index("ix_refresh_tokens_family_id", "family_id"),
)

revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subject", sa.String(36), nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=False),
    sa.Index("ix_revocations_revoked_at", "revoked_at"),
)
"""Credentials refused from a moment on: a principal's, an API token's or a sign-in's (a
refresh-token family's) id, with the time (epoch seconds) before which what it issued dies."""

login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("window_end", sa.Float, nullable=False),
)
"""Sign-in attempts per account or client address in the current window, counted before the
password is checked so the budget holds under concurrency and across processes."""

pairings = sa.Table(
    "pairings",
    metadata,
    _id(primary_key=True),
    sa.Column("user_code", sa.String(16), nullable=False, unique=True),
    sa.Column("device_code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column(
        "org_id",
        sa.String(36),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=True,
    ),
    _id("device_id", nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    _created(),
    _id("wants_org_id", nullable=True),
    sa.Column("address", sa.String(100), nullable=True),
    sa.Index("ix_pairings_wants_org", "wants_org_id", "status"),
)

# Telemetry. Points are laid out for ingest speed: an integer key in arrival order and one index
# that a push from one device fills in a single region (its points share the device and arrive in
# time order), which also answers the queries (device, field, time range). Device ids carry the
# tenant wall: every telemetry endpoint loads the device in the caller's scope first. Times are
# integer microseconds since the Unix epoch, so buckets are integer arithmetic on both back ends.
telemetry_points = sa.Table(
    "telemetry_points",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("device_id", sa.String(36), nullable=False),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("num", sa.Float, nullable=True),
    sa.Column("value", sa.Text, nullable=True),
    sa.Index("ix_telemetry_points_device_field_ts", "device_id", "field", "ts"),
)
"""One value of one field at one time: `num` for numbers (what aggregates read), `value` the
JSON of anything that is not a float (ints too, so they come back as ints)."""

telemetry_latest = sa.Table(
    "telemetry_latest",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("field", sa.String(64), primary_key=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("num", sa.Float, nullable=True),
    sa.Column("value", sa.Text, nullable=True),
)

telemetry_batches = sa.Table(
    "telemetry_batches",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("last_point_id", sa.BigInteger, nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Index("ix_telemetry_batches_received_at", "received_at"),
)
"""Every batch stored, by the id its sender gave it: a batch pushed again is recognised and not
stored twice. `last_point_id` lets retention cut points by arrival time along the primary key."""

# Files. A tree per organization (scope "-") or project (scope = its id). Paths are keys, never
# filesystem paths: bytes live in the blob store under their SHA-256, so no name a client sends
# can reach the disk.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    _created(),
)

files = sa.Table(
    "files",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("scope", sa.String(36), nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("parent", sa.String(1024), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("is_dir", sa.Boolean, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mime", sa.String(200), nullable=True),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("org_id", "scope", "path", name="uq_files_path"),
    sa.Index("ix_files_parent", "org_id", "scope", "parent", "path"),
)

file_tasks = sa.Table(
    "file_tasks",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("scope", sa.String(36), nullable=False),
    sa.Column("op", sa.String(10), nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("target", sa.String(1024), nullable=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("progress", sa.Float, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("lease_owner", sa.String(40), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Index("ix_file_tasks_status", "status"),
)
"""Move, copy and remove, run after the request returns, by the server process that holds the
task's lease (`lease_owner` until `lease_until`); a task whose lease ran out (its server
stopped under it) is taken over (each is one transaction, so a half-done one left nothing
behind)."""

content_data = sa.Table(
    "content_data",
    metadata,
    sa.Column(
        "content_id",
        sa.String(36),
        sa.ForeignKey("resources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("variant", sa.String(100), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mime", sa.String(200), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
"""The bytes of a content item and of each of its variants ("" is the item itself), as blobs."""

update_keys = sa.Table(
    "update_keys",
    metadata,
    sa.Column(
        "org_id",
        sa.String(36),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("public_key", sa.String(64), nullable=False),
    sa.Column("private_key", sa.Text, nullable=True),
    _created(),
)
"""An organization's ed25519 package signing key; the private half only when the server holds it."""

package_versions = sa.Table(
    "package_versions",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("signature", sa.String(100), nullable=True),
    _created(),
    sa.UniqueConstraint("org_id", "reference", "version", name="uq_package_versions_version"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column(
        "version_id",
        sa.String(36),
        sa.ForeignKey("package_versions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("rules", sa.Text, nullable=False),
    sa.Column("percentage", sa.Float, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("failure_threshold", sa.Float, nullable=True),
    sa.Column("min_reports", sa.Integer, nullable=False),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_deployments_org_state", "org_id", "state"),
)
"""Which version of a package goes to which devices: rules over their properties, a stable
percentage, and a state (active, paused, aborted)."""

deployment_reports = sa.Table(
    "deployment_reports",
    metadata,
    sa.Column(
        "deployment_id",
        sa.String(36),
        sa.ForeignKey("deployments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
"""The latest state each device reported for a deployment (downloading, installed, failed)."""

installed_packages = sa.Table(
    "installed_packages",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("reference", sa.String(200), primary_key=True),
    _org(),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_installed_packages_version", "org_id", "reference", "version"),
)
"""What each device last said it has installed: in its own update check, or in a report of an
installed version. Counts per version across the fleet and finds the devices on one."""

events = sa.Table(
    "events",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("object_id", sa.String(500), nullable=False),
    _id("device_id", nullable=True),
    _id("project_id", nullable=True),
    sa.Column("document", sa.Text, nullable=True),
    sa.Index("ix_events_org", "org_id", "id"),
    sa.Index("ix_events_device", "device_id", "id"),
    sa.Index("ix_events_project", "project_id", "id"),
)
"""The journal: recent events, kept for a while (`realtime.journal`). Ids are time-ordered."""

oauth_codes = sa.Table(
    "oauth_codes",
    metadata,
    _id(primary_key=True),
    _org(),
    sa.Column("code_hash", sa.String(64), nullable=False),
    _id("user_id", nullable=False),
    _id("client_id", nullable=False),
    sa.Column("redirect_uri", sa.String(2000), nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("read_only", sa.Boolean, nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("used_at", UTCDateTime(), nullable=True),
    _id("family_id", nullable=True),
    _created(),
)
"""OAuth authorization codes (`identity.oauth`): what a person let a registered app do, until
the app exchanges the code once with its PKCE verifier. Stored hashed; short-lived."""

command_groups = sa.Table(
    "command_groups",
    metadata,
    _id(primary_key=True),
    _org(),
    _id("project_id", nullable=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("sender", sa.String(300), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    _created(),
    sa.Index("ix_command_groups_org", "org_id", "id"),
    sa.Index(
        "ix_command_groups_idempotency",
        "org_id",
        "idempotency_key",
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    ),
)
"""One command sent to many devices: a command row per device shares its id (`group_id`)."""

commands = sa.Table(
    "commands",
    metadata,
    _id(primary_key=True),
    _org(),
    _id("project_id", nullable=True),
    _id("device_id", nullable=False),
    _id("group_id", nullable=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("sender", sa.String(300), nullable=False),
    sa.Column("timeout", sa.Float, nullable=False),
    _created(),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("deadline", UTCDateTime(), nullable=True),
    sa.Column("answered_at", UTCDateTime(), nullable=True),
    sa.Column("progress", sa.Text, nullable=True),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.String(2000), nullable=True),
    sa.Index("ix_commands_org", "org_id", "id"),
    sa.Index("ix_commands_device", "device_id", "state", "id"),
    sa.Index("ix_commands_group", "group_id", "id"),
    sa.Index("ix_commands_expiry", "state", "expires_at"),
    sa.Index("ix_commands_deadline", "state", "deadline"),
    sa.Index(
        "ix_commands_idempotency",
        "org_id",
        "idempotency_key",
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    ),
)
"""Commands to devices (`commands`): what to do, and each state it went through with its
time. `deadline` is when a delivered command times out; `answered_at` is when the device's
answer came, even after it timed out."""

twins = sa.Table(
    "twins",
    metadata,
    _id("device_id", primary_key=True),
    _org(),
    _id("project_id", nullable=True),
    sa.Column("desired", sa.Text, nullable=False),
    sa.Column("reported", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("desired_version", sa.Integer, nullable=False),
    sa.Column("reported_version", sa.Integer, nullable=False),
    sa.Column("tags_version", sa.Integer, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("pending", sa.Integer, nullable=False),
    sa.Column("clear_when_reported", sa.Boolean, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_twins_org", "org_id", "pending"),
)
"""Each device's twin (`twin`): desired (people and apps), reported (the device) and tags
(people and apps, never sent to the device), each with its own version; `pending` counts the
desired keys the device has not reported yet."""

twin_changes = sa.Table(
    "twin_changes",
    metadata,
    _id(primary_key=True),
    _org(),
    _id("device_id", nullable=False),
    sa.Column("section", sa.String(10), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("patch", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("by", sa.String(300), nullable=False),
    sa.Column("report_id", sa.String(64), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_twin_changes_device", "device_id", "section", "version"),
    sa.Index("ix_twin_changes_at", "device_id", "at"),
    sa.Index(
        "ix_twin_changes_report",
        "device_id",
        "report_id",
        unique=True,
        sqlite_where=sa.text("report_id IS NOT NULL"),
        postgresql_where=sa.text("report_id IS NOT NULL"),
    ),
)
"""Every change of a twin: the merge patch, the section as it stood after it (so a device can
be brought from any version it names to the latest in one step), who made it, and, for a
device's report, the id it gave so a report sent twice is applied once."""
