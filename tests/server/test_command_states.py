"""The commands' state machine as a rule over one row: every state a change may leave, and
that nothing moves a command backwards or gives it a second answer."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tether.server.commands.store import (
    FINAL,
    OPEN,
    STATES,
    UNDELIVERED,
    Answerer,
    AnswerIn,
    DeviceChange,
    transition,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
BY = Answerer("org", "device")


def row(state: str, **values: Any) -> dict[str, Any]:
    return {
        "state": state,
        "timeout": 30.0,
        "sent_at": None,
        "delivered_at": None,
        "started_at": None,
        "deadline": None,
        "answered_at": None,
    } | values


def ack() -> DeviceChange:
    return DeviceChange("ack", BY, "c", at=NOW)


def answer(state: str = "succeeded") -> DeviceChange:
    data = AnswerIn(state, {"ok": 1})  # type: ignore[arg-type]
    return DeviceChange("answer", BY, "c", answer=data, result='{"ok":1}', at=NOW)


@pytest.mark.parametrize("state", STATES)
def test_an_acknowledgement_delivers_only_what_was_not_delivered(state: str) -> None:
    values = transition(row(state), ack(), NOW)
    if state in UNDELIVERED:
        assert values["state"] == "delivered"
        assert values["deadline"] == NOW + dt.timedelta(seconds=30)
    else:
        assert values == {}


@pytest.mark.parametrize("state", STATES)
def test_progress_moves_only_open_commands(state: str) -> None:
    change = DeviceChange("progress", BY, "c", progress='{"pct":5}', at=NOW)
    values = transition(row(state, delivered_at=NOW), change, NOW)
    assert (values.get("state") == "in_progress") == (state in OPEN)


@pytest.mark.parametrize("state", STATES)
def test_an_answer_ends_an_open_command_and_is_recorded_late_on_an_ended_one(state: str) -> None:
    values = transition(row(state), answer("failed"), NOW)
    assert values["answered_at"] == NOW
    assert values["result"] == '{"ok":1}'
    assert values.get("state") == ("failed" if state in OPEN else None)
    if state in FINAL:
        assert "finished_at" not in values


def test_the_first_answer_stands() -> None:
    answered = row("succeeded", answered_at=NOW)
    assert transition(answered, answer("failed"), NOW) == {}


def test_a_sent_time_kept_in_memory_is_stored_with_the_acknowledgement() -> None:
    sent = NOW - dt.timedelta(milliseconds=3)
    change = DeviceChange("ack", BY, "c", sent_at=sent, at=NOW)
    assert transition(row("queued"), change, NOW)["sent_at"] == sent
    assert transition(row("sent", sent_at=sent), ack(), NOW)["sent_at"] == sent
