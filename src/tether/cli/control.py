"""`tether commands` and `tether twin`: steer devices from a shell. Send a command to one
device or to a filter and wait for the answers; read and patch a twin."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import typer

import tether
from tether.cli.common import Commands, JsonOption, UrlOption, connect, named, parse_json
from tether.cli.output import emit_json, fail, record, table
from tether.client._telemetry import unix_seconds

commands_app = Commands(help="Commands: send to a device or many, wait for answers, list, cancel.")
twin_app = Commands(help="Device twins: read, change desired or tags, history, fleet summary.")

COLUMNS = ("id", "device_id", "name", "state", "result", "error", "created_at")


def _row(command: tether.Command) -> dict[str, Any]:
    return {c: command.data.get(c) for c in COLUMNS}


def _object(text: str | None, what: str) -> dict[str, Any]:
    value = parse_json(text, what, '\'{"location_id": "..."}\'') if text else {}
    if not isinstance(value, dict):
        raise fail(f"{what} must be a JSON object.")
    return value


@commands_app.command("send")
def send(
    name: Annotated[str, typer.Argument(help="The command's name, e.g. reboot.")],
    payload: Annotated[
        str | None, typer.Argument(help="Its payload as JSON, e.g. '{\"delay\": 5}'.")
    ] = None,
    device: Annotated[
        list[str] | None, typer.Option("--device", help="A device's name or id (repeatable).")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            help='A device filter as JSON, the device list\'s: \'{"location_id": "...", '
            '"online": true, "document": {"subtype": "kiosk"}}\'.'
        ),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the answers (0: do not wait).")
    ] = 30.0,
    ttl: Annotated[float | None, typer.Option(help="Seconds it may wait for a device.")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds a device has to answer once it has it.")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Send it once, however often asked.")
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a command to one device (--device), several, or a filter (--where), and wait for
    the answers. Exits 1 when one did not succeed."""
    if bool(device) == bool(where):
        raise fail("Give --device (one or more) or --where, not both.")
    body = parse_json(payload, "PAYLOAD") if payload else None
    options: dict[str, Any] = {"idempotency_key": key, "ttl": ttl, "timeout": timeout}
    with connect(url) as client:
        if device and len(device) == 1:
            sent = client.commands.send(named(client, "devices", device[0]), name, body, **options)
            commands = [_waited(sent, wait)]
        else:
            targets = [named(client, "devices", d) for d in device] if device else None
            group = client.commands.send_many(
                name, body, devices=targets, where=_object(where, "--where"), **options
            )
            if wait > 0 and not as_json:
                typer.echo(f"Sent to {group.total} devices; waiting for their answers…", err=True)
            if wait > 0:
                with contextlib.suppress(tether.CommandTimeoutError):
                    group.wait(wait)
            commands = group.commands()
    table([_row(c) for c in commands], COLUMNS, as_json)
    if wait > 0 and any(c.state != "succeeded" for c in commands):
        raise typer.Exit(1)


def _waited(command: tether.Command, wait: float) -> tether.Command:
    if wait > 0:
        with contextlib.suppress(tether.CommandTimeoutError):
            command.wait(wait)
    return command


@commands_app.command("list")
def list_commands(
    state: Annotated[
        str | None, typer.Option(help="Only this state (open: not ended yet).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="Only this device's (name or id).")] = None,
    name: Annotated[str | None, typer.Option(help="Only commands of this name.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent commands, newest first."""
    with connect(url) as client:
        found = client.commands.list(
            state=state,
            device=named(client, "devices", device) if device else None,
            name=name,
            limit=limit,
        )
    table([_row(c) for c in found], COLUMNS, as_json)


@commands_app.command("show")
def show(
    command_id: Annotated[str, typer.Argument(help="The command's id.")],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """A command with the time of each state it went through."""
    with connect(url) as client:
        record(client.commands.get(command_id).data, as_json)


@commands_app.command("cancel")
def cancel(
    command_id: Annotated[str, typer.Argument(help="The command's id.")],
    url: UrlOption = None,
) -> None:
    """Take back a command its device does not have yet."""
    with connect(url) as client:
        try:
            client.commands.get(command_id).cancel()
        except tether.ConflictError as exc:
            raise fail(exc.message) from None
    typer.echo(f"Canceled {command_id}.")


@twin_app.command("show")
def show_twin(
    device: Annotated[str, typer.Argument(help="Device name or id.")],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """A device's twin: desired beside reported, the delta still pending, tags, versions."""
    with connect(url) as client:
        twin = client.twins.get(named(client, "devices", device))
    if as_json:
        emit_json(twin)
        return
    versions = twin["versions"]
    for section in ("desired", "reported", "tags"):
        typer.echo(f"{section} (version {versions[section]}): {_compact(twin[section])}")
    typer.echo(f"pending: {_compact(twin['delta'])}")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@twin_app.command("set")
def set_twin(
    device: Annotated[str, typer.Argument(help="Device name or id.")],
    patch: Annotated[
        str, typer.Argument(help='A JSON merge patch: \'{"fan": {"speed": 3}}\' (null removes).')
    ],
    tags: Annotated[bool, typer.Option("--tags", help="Patch tags instead of desired.")] = False,
    if_version: Annotated[
        int | None, typer.Option(help="Refuse if the section changed since this version.")
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a twin's desired state (or its tags) by a merge patch."""
    change = _object(patch, "PATCH")
    with connect(url) as client:
        target = named(client, "devices", device)
        try:
            if tags:
                twin = client.twins.tag(target, change, if_version=if_version)
            else:
                twin = client.twins.desire(target, change, if_version=if_version)
        except tether.ConflictError as exc:
            raise fail(exc.message) from None
    if as_json:
        emit_json(twin)
        return
    section = "tags" if tags else "desired"
    typer.echo(f"{section} is at version {twin['versions'][section]}: {_compact(twin[section])}")


@twin_app.command("history")
def history(
    device: Annotated[str, typer.Argument(help="Device name or id.")],
    section: Annotated[str | None, typer.Option(help="desired, reported or tags.")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (1h, ISO 8601...).")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The changes of a twin, oldest first."""
    since_value = None
    if since is not None:
        try:
            since_value = unix_seconds(since)
        except ValueError as exc:
            raise fail(str(exc)) from None
    with connect(url) as client:
        changes = client.twins.history(
            named(client, "devices", device), section=section, since=since_value
        )
    rows = [{**c, "patch": _compact(c["patch"])} for c in changes]
    table(rows, ("at", "section", "version", "by", "patch"), as_json)


@twin_app.command("summary")
def summary(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """How many twins have converged and how many have desired keys pending."""
    with connect(url) as client:
        record(client.twins.summary(), as_json)
