"""Telemetry pieces shared by both client flavours: the on-disk outbox, readings, time values.

The outbox holds committed entries on disk until the server has them.

A commit is a SQLite transaction (WAL, `synchronous=FULL`), so once `commit()` returns the
entry survives a killed process and a power cut. Pushing claims the oldest entries as a batch
with a fresh id, recorded before any byte goes out; until the server acknowledges it, every
push (from this process or another one on the same file) resends that same batch under the same
id, and the server stores it once. Entries the server refuses are moved to `rejected`, never
deleted unseen.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tether._exceptions import ConfigurationError, OutboxFullError
from tether.client._local_db import open_local, transaction

OnFull = Literal["error", "drop_oldest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    "values" TEXT NOT NULL,
    points INTEGER NOT NULL,
    batch TEXT
);
CREATE INDEX IF NOT EXISTS entries_batch ON entries (batch, seq);
CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    "values" TEXT NOT NULL,
    status INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Entry:
    """One committed entry: a time (Unix seconds) and the values of its fields."""

    seq: int
    ts: float
    values: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    id: str
    entries: list[Entry]

    @property
    def points(self) -> int:
        return sum(len(entry.values) for entry in self.entries)


@dataclass(frozen=True)
class RejectedEntry:
    """An entry the server refused, kept for inspection or `retry_rejected()`."""

    seq: int
    ts: float
    values: dict[str, Any]
    status: int
    code: str
    reason: str
    rejected_at: float


@dataclass(frozen=True)
class Reading:
    """A value of a field at a time: a stored point, or a bucket's aggregate (`ts` is then the
    bucket's start)."""

    ts: dt.datetime
    value: Any

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Reading:
        return cls(dt.datetime.fromtimestamp(data["ts"], dt.UTC), data["value"])


TimeLike = dt.datetime | float | int | str
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | float | dt.timedelta) -> float:
    """Seconds in `90`, `1.5`, `500ms`, `30s`, `5m`, `2h`, `7d`, `1w` or a timedelta."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 2h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def unix_seconds(value: TimeLike) -> float:
    """Unix seconds from a datetime (naive means UTC), a number, an ISO 8601 string, or a
    duration ago (`1h`, `-1h`: one hour before now)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                return time.time() - parse_duration(text.removeprefix("-"))
            except ValueError:
                pass
            try:
                return unix_seconds(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a time: give Unix seconds, ISO 8601 or a duration ago"
                ) from None
    if not math.isfinite(seconds):
        raise ValueError("a time must be finite")
    return seconds


def default_outbox_path(device_id: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """`TETHER_OUTBOX`, else `$XDG_DATA_HOME/tether/outbox/<device id>.db`."""
    environ = os.environ if environ is None else environ
    if environ.get("TETHER_OUTBOX"):
        return Path(environ["TETHER_OUTBOX"]).expanduser()
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tether" / "outbox" / f"{device_id or 'default'}.db"


class Outbox:
    """Durable FIFO of committed telemetry entries, safe to share between processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_entries: int = 1_000_000,
        on_full: OnFull = "error",
    ) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1.")
        if on_full not in ("error", "drop_oldest"):
            raise ConfigurationError('on_full must be "error" or "drop_oldest".')
        self.path = Path(path)
        self.max_entries = max_entries
        self.on_full = on_full
        self.dropped = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = open_local(self.path, _SCHEMA)

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction, taken up front so two processes never interleave."""
        return transaction(self._connection(), self._lock)

    def add(self, ts: float, values: Mapping[str, Any]) -> int:
        """Commit one entry durably; returns its sequence number."""
        text = json.dumps(dict(values), separators=(",", ":"), allow_nan=False)
        with self._transaction() as db:
            (count,) = db.execute("SELECT count(*) FROM entries").fetchone()
            if count >= self.max_entries:
                if self.on_full == "error":
                    raise OutboxFullError(
                        f"The outbox {self.path} holds {count} entries, its limit; push first."
                    )
                excess = count - self.max_entries + 1
                db.execute(
                    "DELETE FROM entries WHERE seq IN "
                    "(SELECT seq FROM entries WHERE batch IS NULL ORDER BY seq LIMIT ?)",
                    (excess,),
                )
                self.dropped += excess
            cursor = db.execute(
                'INSERT INTO entries (ts, "values", points) VALUES (?, ?, ?)',
                (ts, text, len(values)),
            )
            return int(cursor.lastrowid or 0)

    def next_batch(self, max_points: int) -> Batch | None:
        """The batch to send now: the one already claimed and not yet acknowledged, else the
        oldest entries up to `max_points` values (at least one entry) under a new id."""
        with self._transaction() as db:
            row = db.execute("SELECT id FROM batches ORDER BY rowid LIMIT 1").fetchone()
            if row is not None:
                entries = self._entries(db, "WHERE batch = ?", (row[0],))
                if entries:
                    return Batch(row[0], entries)
                db.execute("DELETE FROM batches WHERE id = ?", (row[0],))
            chosen: list[int] = []
            points = 0
            for seq, count in db.execute(
                "SELECT seq, points FROM entries WHERE batch IS NULL ORDER BY seq LIMIT ?",
                (max(1, max_points),),
            ):
                if chosen and points + count > max_points:
                    break
                chosen.append(seq)
                points += count
            if not chosen:
                return None
            batch_id = uuid.uuid4().hex
            db.execute("INSERT INTO batches (id, created) VALUES (?, ?)", (batch_id, time.time()))
            db.execute(
                "UPDATE entries SET batch = ? WHERE batch IS NULL AND seq BETWEEN ? AND ?",
                (batch_id, chosen[0], chosen[-1]),
            )
            return Batch(batch_id, self._entries(db, "WHERE batch = ?", (batch_id,)))

    @staticmethod
    def _entries(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[Entry]:
        rows = db.execute(f'SELECT seq, ts, "values" FROM entries {where} ORDER BY seq', args)
        return [Entry(seq, ts, json.loads(values)) for seq, ts, values in rows]

    def acknowledge(self, batch_id: str) -> None:
        """The server has the batch: forget it."""
        with self._transaction() as db:
            db.execute("DELETE FROM entries WHERE batch = ?", (batch_id,))
            db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    def release(self, batch_id: str) -> None:
        """Give a batch's entries back unclaimed (the server stored none of them)."""
        with self._transaction() as db:
            db.execute("UPDATE entries SET batch = NULL WHERE batch = ?", (batch_id,))
            db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    def reject(
        self, batch: Batch, status: int, code: str, reason: str, only: set[int] | None = None
    ) -> int:
        """Move a refused batch's entries (or just the entries at positions `only`) aside;
        the others go back to the queue. Returns how many were moved."""
        moved = [
            entry for index, entry in enumerate(batch.entries) if only is None or index in only
        ]
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                'INSERT OR REPLACE INTO rejected (seq, ts, "values", status, code, reason, '
                "rejected_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.seq, e.ts, json.dumps(e.values), status, code, reason, now) for e in moved],
            )
            db.executemany("DELETE FROM entries WHERE seq = ?", [(e.seq,) for e in moved])
            db.execute("UPDATE entries SET batch = NULL WHERE batch = ?", (batch.id,))
            db.execute("DELETE FROM batches WHERE id = ?", (batch.id,))
        return len(moved)

    def pending(self) -> int:
        """Committed entries not yet acknowledged by the server."""
        with self._lock:
            return int(self._connection().execute("SELECT count(*) FROM entries").fetchone()[0])

    def rejected(self) -> list[RejectedEntry]:
        with self._lock:
            rows = self._connection().execute(
                'SELECT seq, ts, "values", status, code, reason, rejected_at FROM rejected '
                "ORDER BY seq"
            )
            return [
                RejectedEntry(seq, ts, json.loads(values), status, code, reason, at)
                for seq, ts, values, status, code, reason, at in rows
            ]

    def retry_rejected(self) -> int:
        """Queue the rejected entries again (after fixing what the server objected to)."""
        with self._transaction() as db:
            rows = db.execute('SELECT ts, "values" FROM rejected ORDER BY seq').fetchall()
            db.executemany(
                'INSERT INTO entries (ts, "values", points) VALUES (?, ?, ?)',
                [(ts, values, len(json.loads(values))) for ts, values in rows],
            )
            db.execute("DELETE FROM rejected")
        return len(rows)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise ConfigurationError("This outbox is closed.")
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
