"""What every command shares: the server option, `--json`, and a client whose errors end the
command with one clear line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

import tether
from tether.cli.output import fail
from tether.client._credentials import read_saved_logins
from tether.client._files import local_file_error


def _conventional(command: TyperCommand | TyperGroup, ctx: Any) -> list[str]:
    """Usage pieces as people read them (`URL`, `[EVENT]`, `VALUES...`) where Typer writes
    `{url}`."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = (param.metavar or param.name or "").upper()
            name += "..." if param.nargs != 1 else ""
            pieces.append(name if param.required else f"[{name}]")
    return pieces


def _plain_flags(params: list[Any]) -> list[Any]:
    """Flags take no value, so their help shows no type (Typer shows `<bool>`)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """A command whose help reads as a Unix command's: `tether login URL`, flags untyped."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _conventional(self, ctx)

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


class Group(TyperGroup):
    """A group of commands, listed in the order they were declared, panel by panel in the
    order of `panels` when it names them."""

    panels: tuple[str, ...] = ()

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        if not self.panels:
            return names

        def place(name: str) -> int:
            panel = getattr(self.commands[name], "rich_help_panel", None)
            return self.panels.index(panel) if panel in self.panels else len(self.panels)

        return sorted(names, key=place)

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


class Commands(typer.Typer):
    """`typer.Typer` whose commands and groups use `Command` and `Group`."""

    def __init__(self, cls: type[Group] = Group, **options: Any) -> None:
        super().__init__(cls=cls, no_args_is_help=True, **options)

    def command(  # type: ignore[override]
        self, name: str | None = None, **options: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return super().command(name, cls=Command, **options)


UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="TETHER_URL", help="Server URL (default: the saved login)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DocumentOption = Annotated[
    str | None, typer.Option("--document", help='JSON document, e.g. \'{"subtype": "player"}\'.')
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@contextmanager
def connect(url: str | None) -> Iterator[tether.Client]:
    """A client from the usual credential chain, for the server given (--url, TETHER_URL) or
    logged in to last; SDK errors, bad arguments and local file errors become one clear line."""
    server = url or os.environ.get("TETHER_URL") or read_saved_logins().get("default")
    if not server:
        raise fail("Not logged in: run `tether login URL` first (or give --url / TETHER_URL).")
    try:
        with tether.Client(str(server)) as client:
            if client.credentials.kind == "none":
                raise fail(f"Not logged in to {client.url}: run `tether login {client.url}` first.")
            yield client
    except tether.AuthenticationError as exc:
        again = f"; log in again: tether login {server}" if not url else ""
        raise fail(f"{exc.message} ({exc.status} {exc.code}){again}") from None
    except tether.APIError as exc:
        raise fail(f"{exc.message} ({exc.status} {exc.code})") from None
    except tether.NetworkError as exc:
        raise fail(f"{exc.message} Is the server at {server} running?") from None
    except tether.TetherError as exc:
        raise fail(exc.message) from None
    except OSError as exc:
        raise fail(_local_error(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None


def named(client: tether.Client, kind: str, name_or_id: str) -> str:
    """The id of the `kind` ("devices", "projects", …) named `name_or_id`, or with that id; a
    one-line error when none is, or when several share the name."""
    collection = getattr(client, kind)
    singular = kind[:-1]
    if name_or_id == client.credentials.device_id:
        return name_or_id
    try:
        found = [r.id for r in collection.find(name=name_or_id)]
    except tether.PermissionDeniedError:
        found = []
    if len(found) == 1:
        return str(found[0])
    if len(found) > 1:
        raise fail(f"{len(found)} {kind} are named {name_or_id!r}: give its id.")
    try:
        return str(collection.get(name_or_id).id)
    except (tether.NotFoundError, tether.BadRequestError):
        raise fail(f"No {singular} is named {name_or_id!r} or has that id.") from None


def listed_id(
    rows: list[dict[str, Any]], kind: str, name_or_id: str, name_key: str = "name"
) -> str:
    """The id of the row (of a list the API gave) named `name_or_id`, or with that id, for
    kinds the SDK has no collection of (users, deployments); a one-line error when none is, or
    when several share the name."""
    by_name = [str(row["id"]) for row in rows if row[name_key] == name_or_id]
    if len(by_name) > 1:
        raise fail(f"{len(by_name)} {kind}s are named {name_or_id!r}: give its id.")
    if by_name:
        return by_name[0]
    if any(row["id"] == name_or_id for row in rows):
        return name_or_id
    raise fail(f"No {kind} is named {name_or_id!r} or has that id.")


def project_of(client: tether.Client, name_or_id: str) -> str:
    """The id of the project named `name_or_id`, or with that id."""
    return named(client, "projects", name_or_id)


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


def json_document(text: str | None) -> dict[str, Any]:
    """A `--document` option's JSON object (empty when not given)."""
    value = parse_json(text, "--document", '\'{"subtype": "player"}\'') if text else {}
    if not isinstance(value, dict):
        raise fail('--document must be a JSON object, e.g. \'{"subtype": "player"}\'.')
    return value


def split_pair(item: str, form: str = "NAME=VALUE") -> tuple[str, str]:
    """`name=value` as its two sides (the name stripped); a one-line error otherwise."""
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise fail(f"Give {form}, not {item!r}.")
    return name.strip(), value
