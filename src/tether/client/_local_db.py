"""The device's own SQLite file (its outbox: telemetry, commands and twin share it), opened
one way: WAL, `synchronous=FULL`, and write transactions taken up front."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_local(path: str | os.PathLike[str], schema: str) -> sqlite3.Connection:
    """A connection to the device's file (made, with its folder, if new), its tables made
    from `schema` (statements separated by `;`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    _use_wal(db)
    db.execute("PRAGMA synchronous=FULL")
    with transaction(db, threading.Lock()) as writing:
        for statement in schema.split(";"):
            if statement.strip():
                writing.execute(statement)
    return db


def _use_wal(db: sqlite3.Connection, patience: float = 30.0) -> None:
    """Switch a new file to WAL. The switch needs the file to itself and does not wait for it,
    so when another process opens the same new file at that moment, try again."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def transaction(db: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken up front so two processes never interleave."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
