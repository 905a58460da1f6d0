"""Two server processes sharing a database and Redis: a command sent through one reaches a
device connected to the other, and its answer is seen where it was sent; a desired change made
on one reaches the device on the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import OPERATOR, RunningServer, free_port, wait_for
from tests.faults.conftest import serve

pytestmark = pytest.mark.subprocess


def test_a_command_and_a_desired_change_cross_nodes(
    server: RunningServer, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if server.backend != "postgresql":
        pytest.skip("a cluster runs on PostgreSQL (several nodes cannot share SQLite)")
    monkeypatch.setenv("TETHER_OUTBOX", str(tmp_path / "device.db"))
    ports = [free_port(), free_port()]
    data = tmp_path / "data"
    nodes = [serve(port, data, server.database_url, redis_url) for port in ports]
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    org, user, password = OPERATOR
    seen: list[dict[str, Any]] = []
    try:
        with tether.Client(a, username=user, password=password, organization=org) as people:
            device = people.devices.create("on-node-b")
            with tether.Client(b, device_id=device.id, device_secret=str(device.secret)) as dc:
                dc.commands.on("where", lambda command: {"answered_by": "b"})
                dc.commands.start()
                dc.twins.on_desired(lambda patch, desired, version: seen.append(desired))
                dc.twins.start()
                command = people.commands.send(device, "where").wait(30)
                assert (command.state, command.result) == ("succeeded", {"answered_by": "b"})
                people.twins.desire(device, {"mode": "cluster"})
                wait_for(lambda: seen == [{"mode": "cluster"}], 30, "the desired change on b")
    finally:
        for node in nodes:
            node.kill()
            node.wait(30)
