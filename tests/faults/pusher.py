"""A device process for the fault tests: push everything in the outbox, then exit 0.

python pusher.py URL DEVICE_ID DEVICE_SECRET OUTBOX
"""

from __future__ import annotations

import sys

import tether


def main() -> None:
    url, device_id, secret, outbox = sys.argv[1:5]
    with tether.Client(url, device_id=device_id, device_secret=secret) as client:
        telemetry = tether.Telemetry(client, outbox=outbox, batch_points=100)
        while telemetry.push():
            pass
        telemetry.close()


if __name__ == "__main__":
    main()
