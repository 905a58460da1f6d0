"""Commands on the device, shared by both client flavours: the inbox on disk and what a
handler is given.

The inbox lives in the device's outbox file (one SQLite file per device, WAL,
`synchronous=FULL`). A command is written there before the device acknowledges it, so the
server calls it `delivered` only once it would survive a crash. Each command moves through
stages, each a committed UPDATE guarded by the stage it leaves:

    received → delivered → running → answered → reported
    received → skipped     (the server said it was canceled, expired or ended)

The handler runs only after `running` is committed, so it runs at most once, whatever dies
when. A device that dies while a handler runs finds the command `running` when it starts
again: it does not run it a second time (it cannot know how far the first run got) and
reports it `failed` with the error `interrupted`. An answer is written before it is sent and
sent until the server has it, so it survives the device's restart and the server being down.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether._exceptions import CommandRejected
from tether.client._local_db import open_local, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS command_inbox (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    timeout REAL NOT NULL,
    received REAL NOT NULL,
    stage TEXT NOT NULL,
    answer TEXT,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS command_inbox_stage ON command_inbox (stage, id)
"""
INTERRUPTED = "interrupted: the device stopped while the handler ran, so it was not run again"
KEEP = 31 * 86_400.0
"""Seconds an ended command's id is kept, so a copy delivered again is recognised: longer than
a command may wait (30 days)."""
RUNNING_STATES = ("delivered", "in_progress")


@dataclass
class ReceivedCommand:
    """A command as its handler on the device gets it. `progress(value)` tells the sender
    how far it got; `reject(reason)` refuses it."""

    id: str
    name: str
    payload: Any
    timeout: float
    _report: Any = field(default=None, repr=False)

    def progress(self, value: Any) -> Any:
        """Report progress (any JSON value); with an `AsyncClient`, await it."""
        return self._report(self.id, value)

    def reject(self, reason: str) -> None:
        raise CommandRejected(reason)


@dataclass(frozen=True)
class Answer:
    """A handler's outcome, kept until the server has it."""

    id: str
    state: str
    result: Any
    error: str | None


class Inbox:
    """The device's received commands and their answers, on disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_local(self.path, _SCHEMA)
        with self._transaction() as db:
            db.execute(
                "UPDATE command_inbox SET stage = 'answered', answer = 'failed', error = ? "
                "WHERE stage = 'running'",
                (INTERRUPTED,),
            )
            db.execute(
                "DELETE FROM command_inbox WHERE stage IN ('reported', 'skipped') AND received < ?",
                (time.time() - KEEP,),
            )

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    def _move(self, command_id: str, source: str, values: dict[str, Any]) -> bool:
        sets = ", ".join(f"{name} = ?" for name in values)
        with self._transaction() as db:
            moved = db.execute(
                f"UPDATE command_inbox SET {sets} WHERE id = ? AND stage = ?",
                (*values.values(), command_id, source),
            )
        return moved.rowcount == 1

    def receive(self, command: dict[str, Any]) -> bool:
        """Keep a command the server sent; False when it is here already (a copy)."""
        with self._transaction() as db:
            added = db.execute(
                "INSERT OR IGNORE INTO command_inbox (id, name, payload, timeout, received, stage)"
                " VALUES (?, ?, ?, ?, ?, 'received')",
                (
                    str(command["id"]),
                    str(command["name"]),
                    json.dumps(command.get("payload")),
                    float(command.get("timeout") or 300.0),
                    time.time(),
                ),
            )
        return added.rowcount == 1

    def unacknowledged(self) -> list[str]:
        rows = self._db.execute(
            "SELECT id FROM command_inbox WHERE stage = 'received' ORDER BY id"
        ).fetchall()
        return [row[0] for row in rows]

    def acknowledged(self, command_id: str, state: str) -> None:
        """The server's word on a command we hold: run it, or not (it ended meanwhile)."""
        stage = "delivered" if state in RUNNING_STATES else "skipped"
        self._move(command_id, "received", {"stage": stage})

    def next_to_run(self) -> ReceivedCommand | None:
        """The oldest command delivered and not run yet."""
        row = self._db.execute(
            "SELECT id, name, payload, timeout FROM command_inbox WHERE stage = 'delivered' "
            "ORDER BY id LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return ReceivedCommand(row[0], row[1], json.loads(row[2]), row[3])

    def start(self, command_id: str) -> bool:
        """Commit that the handler runs now: True once per command, ever."""
        return self._move(command_id, "delivered", {"stage": "running"})

    def finish(self, answer: Answer) -> None:
        self._move(
            answer.id,
            "running",
            {
                "stage": "answered",
                "answer": answer.state,
                "result": json.dumps(answer.result),
                "error": answer.error,
            },
        )

    def unreported(self) -> list[Answer]:
        rows = self._db.execute(
            "SELECT id, answer, result, error FROM command_inbox WHERE stage = 'answered' "
            "ORDER BY id"
        ).fetchall()
        return [Answer(r[0], r[1], None if r[2] is None else json.loads(r[2]), r[3]) for r in rows]

    def reported(self, command_id: str) -> None:
        self._move(command_id, "answered", {"stage": "reported"})

    def stages(self) -> dict[str, str]:
        """Each command's stage, by id (for tests and diagnostics)."""
        return dict(self._db.execute("SELECT id, stage FROM command_inbox").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()


def answer_of(command_id: str, value: Any = None, error: BaseException | None = None) -> Answer:
    """The answer a handler's run gives: its value (succeeded), a `CommandRejected`
    (rejected) or any other exception (failed), with the exception's message."""
    if isinstance(error, CommandRejected):
        return Answer(command_id, "rejected", None, str(error)[:2000] or "rejected")
    if error is not None:
        return Answer(command_id, "failed", None, f"{type(error).__name__}: {error}"[:2000])
    return Answer(command_id, "succeeded", value, None)
