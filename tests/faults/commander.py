"""A device process for the fault tests: run every command it is sent, writing each command
id to its run log (appended and synced before the handler returns) so the test counts the
runs, until none of its commands is open; then exit 0.

python commander.py URL DEVICE_ID DEVICE_SECRET INBOX RUNLOG
"""

from __future__ import annotations

import os
import sys
import time

import tether


def main() -> None:
    url, device_id, secret, inbox, runlog = sys.argv[1:6]
    log = os.open(runlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def run(command: tether.ReceivedCommand) -> str:
        os.write(log, f"{command.id}\n".encode())
        os.fsync(log)
        return command.id

    with tether.Client(url, device_id=device_id, device_secret=secret) as client:
        commands = tether.Commands(client, inbox=inbox)
        commands.on("*", run)
        while True:
            try:
                commands.start()
                break
            except tether.TetherError:
                time.sleep(0.2)
        while True:
            time.sleep(0.1)
            try:
                page = client.get(f"devices/{device_id}/commands", {"state": "open", "limit": 1})
            except tether.TetherError:
                continue
            if page["total"] == 0 and not commands.inbox().unreported():
                break
        commands.stop()


if __name__ == "__main__":
    main()
