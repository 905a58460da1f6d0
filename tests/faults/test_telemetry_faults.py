"""Telemetry under faults, with real processes on loopback: a device killed with SIGKILL again
and again while it pushes, and a server killed during ingest from 20 devices. Either way the
server must end with every committed entry exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import OPERATOR, RunningServer, wait_for
from tests.faults.conftest import serve
from tether.client._telemetry import Outbox

pytestmark = pytest.mark.subprocess

T0 = 1_767_225_600.0
PUSHER = Path(__file__).with_name("pusher.py")


def stored_values(client: tether.Client, device_id: str, field: str) -> list[Any]:
    values: list[Any] = []
    page = client.get(f"devices/{device_id}/telemetry", {"field": field, "limit": 10_000})
    while True:
        values += [p["value"] for p in page["points"]]
        if not page.get("next"):
            return values
        page = client.get(page["next"])


def test_a_device_killed_20_times_while_pushing_loses_and_repeats_nothing(
    server: RunningServer, client: tether.Client, tmp_path: Path
) -> None:
    device = client.post("devices", {"name": "killed"})
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    total = 10_000
    for i in range(total):
        outbox.add(T0 + i / 100, {"i": i})
    rng = random.Random(20)
    thresholds = sorted((rng.randrange(200, total - 200) for _ in range(20)), reverse=True)
    command = [sys.executable, str(PUSHER), server.url, device["id"], device["secret"], str(path)]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    kills = 0
    for threshold in thresholds:
        process = subprocess.Popen(command, env=env)
        wait_for(
            lambda p=process, t=threshold: outbox.pending() <= t or p.poll() is not None,
            timeout=120,
            what="the pusher to get under its threshold",
        )
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(30)
    assert kills == 20
    assert outbox.pending() > 0
    finished = subprocess.run(command, env=env, timeout=300)
    assert finished.returncode == 0
    assert outbox.pending() == 0
    outbox.close()
    values = stored_values(client, device["id"], "i")
    assert len(values) == total
    assert sorted(values) == list(range(total))


def test_a_server_killed_during_ingest_from_20_devices_keeps_every_point_once(
    server: RunningServer, killable: dict[str, Any], tmp_path: Path
) -> None:
    org, user, password = OPERATOR
    per_device = 100
    with tether.Client(
        killable["url"], username=user, password=password, organization=org
    ) as admin:
        devices = [admin.post("devices", {"name": f"d{n}"}) for n in range(20)]
        clients = [
            tether.Client(killable["url"], device_id=d["id"], device_secret=d["secret"])
            for d in devices
        ]
        streams = []
        for n, device_client in enumerate(clients):
            t = tether.Telemetry(device_client, outbox=tmp_path / f"outbox-{n}.db", batch_points=4)
            for i in range(per_device):
                t.add_value("seq", i)
                t.commit(ts=T0 + i)
            streams.append(t)
        total = 20 * per_device

        def pending() -> int:
            return sum(t.pending for t in streams)

        try:
            for t in streams:
                t.start(interval=0.01, max_delay=0.5)
            wait_for(lambda: pending() <= total * 3 // 4, timeout=120, what="a quarter pushed")
            killable["process"].send_signal(signal.SIGKILL)
            killable["process"].wait(30)
            left = pending()
            assert 0 < left < total
            killable["process"] = serve(killable["port"], killable["data"], server.database_url)
            wait_for(lambda: pending() == 0, timeout=180, what="every entry pushed")
        finally:
            for t in streams:
                t.close()
            for device_client in clients:
                device_client.close()
        for device in devices:
            values = stored_values(admin, device["id"], "seq")
            assert sorted(values) == list(range(per_device)), device["name"]
