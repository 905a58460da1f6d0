"""What every command shares: the server option, `--json`, and a client whose errors end the
command with one clear line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

import tether
from tether.cli.output import fail
from tether.client._files import local_file_error

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
    except OSError as exc:
        raise fail(_local_error(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None


def _local_error(exc: OSError) -> str:
    """A local file problem in words ("No such file: x.bin"), not `[Errno 2] ...`."""
    return local_file_error(exc).message


def parse_json(text: str, what: str, example: str = "'{\"level\": 3}' or '\"text\"'") -> Any:
    """`text` as JSON, or a one-line error naming the option it came from, with an example of
    what that option takes."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise fail(f"{what} is not JSON ({exc}), e.g. {example}.") from None


def split_pair(item: str, form: str = "NAME=VALUE") -> tuple[str, str]:
    """`name=value` as its two sides (the name stripped); a one-line error otherwise."""
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise fail(f"Give {form}, not {item!r}.")
    return name.strip(), value
