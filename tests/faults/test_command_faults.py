"""Commands under faults, with real processes on loopback: 1,000 commands to 20 devices while
the server is killed with SIGKILL 10 times and the device processes 20 times. Every command
must end in exactly one final state, none lost, and no handler may run twice for one command
(counted on the devices)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import OPERATOR, RunningServer
from tests.faults.conftest import serve

pytestmark = pytest.mark.subprocess

COMMANDER = Path(__file__).with_name("commander.py")
DEVICES = 20
PER_DEVICE = 50
FINAL = {"succeeded", "failed", "rejected", "timed_out", "expired", "canceled"}


def test_commands_survive_10_server_kills_and_20_device_kills(
    server: RunningServer, killable: dict[str, Any], tmp_path: Path
) -> None:
    org, user, password = OPERATOR
    with tether.Client(killable["url"], username=user, password=password, organization=org) as c:
        devices = [c.devices.create(f"commanded-{n}") for n in range(DEVICES)]
        for device in devices:
            for n in range(PER_DEVICE):
                c.commands.send(device, "work", n, timeout=600)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}

    def start(index: int) -> subprocess.Popen[bytes]:
        device = devices[index]
        command = [
            sys.executable,
            str(COMMANDER),
            killable["url"],
            device.id,
            str(device.secret),
            str(tmp_path / f"inbox-{index}.db"),
            str(tmp_path / f"runs-{index}.log"),
        ]
        return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)

    processes = {index: start(index) for index in range(DEVICES)}
    rng = random.Random(25)
    kills = ["server"] * 10 + ["device"] * 20
    rng.shuffle(kills)
    try:
        for kill in kills:
            time.sleep(rng.uniform(0.05, 0.2))
            if kill == "server":
                killable["process"].send_signal(signal.SIGKILL)
                killable["process"].wait(30)
                killable["process"] = serve(killable["port"], killable["data"], server.database_url)
            else:
                index = rng.randrange(DEVICES)
                processes[index].send_signal(signal.SIGKILL)
                processes[index].wait(30)
                processes[index] = start(index)
        for process in processes.values():
            assert process.wait(240) == 0
    finally:
        for process in processes.values():
            process.kill()
    runs = Counter(
        line
        for index in range(DEVICES)
        for line in (tmp_path / f"runs-{index}.log").read_text().split()
    )
    with tether.Client(killable["url"], username=user, password=password, organization=org) as c:
        ended = [command for d in devices for command in c.commands.list(device=d, limit=None)]
    states = {command.id: command.state for command in ended}
    assert len(states) == DEVICES * PER_DEVICE
    assert set(states.values()) <= FINAL
    assert max(runs.values()) == 1
    assert set(runs) <= set(states)
    succeeded = {i for i, state in states.items() if state == "succeeded"}
    assert succeeded <= set(runs)
    failed = [command for command in ended if command.state == "failed"]
    assert {str(command.error).split(":")[0] for command in failed} <= {"interrupted"}
    assert len(succeeded) + len(failed) == DEVICES * PER_DEVICE
