"""What every command shares: the server option, `--json`, and a client whose errors end the
command with one clear line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

import tether
from tether.cli.output import fail

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="TETHER_URL", help="Server URL (default: the saved login)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@contextmanager
def connect(url: str | None) -> Iterator[tether.Client]:
    """A client from the usual credential chain; SDK errors, bad arguments and local file
    errors become one clear line."""
    try:
        with tether.Client(url) as client:
            yield client
    except tether.APIError as exc:
        raise fail(f"{exc.message} ({exc.status} {exc.code})") from None
    except tether.TetherError as exc:
        raise fail(exc.message) from None
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
