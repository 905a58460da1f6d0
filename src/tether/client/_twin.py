"""The device's side of its twin, shared by both client flavours, on disk in the device's
outbox file: the desired state it applied and its version, and the reported patches not yet
delivered, in order, each with an id so the server applies it once however often it is sent.
A device offline for a week reports what it did, once, when it comes back."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tether._merge_patch import merge
from tether.client._local_db import open_local, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS twin_desired (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    version INTEGER NOT NULL,
    desired TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS twin_reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id TEXT NOT NULL,
    patch TEXT NOT NULL
)
"""


class TwinStore:
    """The desired state a device applied and its reports still to send."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_local(self.path, _SCHEMA)

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    def desired(self) -> tuple[int, dict[str, Any]]:
        """The version of desired applied last, and desired as it then stood."""
        row = self._db.execute("SELECT version, desired FROM twin_desired").fetchone()
        return (0, {}) if row is None else (int(row[0]), json.loads(row[1]))

    def apply(self, frame: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Take a `twin` frame: a catch-up from our version, or the change right after it.
        The patch applied and desired after it; None when the frame does not follow on from
        what we hold (then ask for a catch-up)."""
        with self._transaction() as db:
            row = db.execute("SELECT version, desired FROM twin_desired").fetchone()
            version, desired = (0, {}) if row is None else (int(row[0]), json.loads(row[1]))
            since = frame.get("since", int(frame["version"]) - 1)
            if since != version:
                return None
            if frame.get("replace"):
                patch = {key: None for key in desired} | dict(frame.get("desired") or {})
                desired = dict(frame.get("desired") or {})
            else:
                patch = dict(frame.get("patch") or {})
                desired = merge(desired, patch)
            db.execute(
                "INSERT INTO twin_desired (one, version, desired) VALUES (1, ?, ?) "
                "ON CONFLICT (one) DO UPDATE SET version = excluded.version, "
                "desired = excluded.desired",
                (int(frame["version"]), json.dumps(desired)),
            )
        return patch, desired

    def queue(self, patch: dict[str, Any]) -> str:
        """Keep a reported patch until the server has it; its report id."""
        report_id = uuid.uuid4().hex
        with self._transaction() as db:
            db.execute(
                "INSERT INTO twin_reports (report_id, patch) VALUES (?, ?)",
                (report_id, json.dumps(patch)),
            )
        return report_id

    def reports(self) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self._db.execute("SELECT seq, report_id, patch FROM twin_reports ORDER BY seq")
        return [(int(r[0]), str(r[1]), json.loads(r[2])) for r in rows.fetchall()]

    def sent(self, seq: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM twin_reports WHERE seq = ?", (seq,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
