"""The `tether` command: run the cloud, sign in, and a verb per area."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from tether.cli.app import app
    except ImportError as exc:  # pragma: no cover - depends on the environment
        sys.exit(f"The tether command needs its extra: pip install 'tether[cli]' ({exc})")
    app()
