"""`tether telemetry`: push values from a shell, read the latest ones, query a time range."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

import tether
from tether.cli.common import Commands, JsonOption, UrlOption, connect, named, split_pair
from tether.cli.output import fail, table

app = Commands(help="Telemetry: push values, read the latest, query over time.")

DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="Device name or id (default: the device whose credentials are in use).",
    ),
]


def parse_assignment(item: str) -> tuple[str, Any]:
    """`field=value`, the value read as JSON when it is JSON (numbers, true, {...}) else text."""
    field, raw = split_pair(item, "values as FIELD=VALUE")
    try:
        return field, json.loads(raw)
    except ValueError:
        return field, raw


@app.command("push")
def push(
    values: Annotated[list[str], typer.Argument(help="FIELD=VALUE pairs, e.g. temp=21.5 on=true")],
    device: DeviceOption = None,
    ts: Annotated[
        str | None, typer.Option(help="Time of the entry: Unix seconds or ISO 8601 (default: now).")
    ] = None,
    outbox: Annotated[
        Path | None, typer.Option(help="Outbox file (default: TETHER_OUTBOX or one per device).")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Commit one entry to the outbox and push everything queued."""
    with connect(url) as client:
        if device is None and client.credentials.kind != "device":
            raise fail("Which device? Give --device ID (these credentials are not a device's).")
        device_id = named(client, "devices", device) if device else None
        t = tether.Telemetry(client, device_id=device_id, outbox=outbox)
        try:
            for item in values:
                t.add_value(*parse_assignment(item))
            t.commit(ts)
            pushed = t.push()
        except ValueError as exc:
            raise fail(str(exc)) from None
        except tether.PushError as exc:
            state = "still queued" if exc.retained_data else "moved aside as rejected"
            raise fail(f"{exc.message} (entries {state}; outbox {t.outbox.path})") from None
        finally:
            t.close()
    typer.echo(f"Pushed {pushed} entr{'y' if pushed == 1 else 'ies'}.")


@app.command("latest")
def latest(
    device: Annotated[str, typer.Argument(help="Device name or id.")],
    field: Annotated[list[str] | None, typer.Option("--field", help="Only these fields.")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The newest value of each field of a device."""
    with connect(url) as client:
        readings = client.telemetry.latest(field, device=named(client, "devices", device))
    rows = [
        {"field": name, "value": r.value, "ts": r.ts.isoformat()}
        for name, r in sorted(readings.items())
    ]
    table(rows, ["field", "value", "ts"], as_json)


@app.command("query")
def query(
    device: Annotated[str, typer.Argument(help="Device name or id.")],
    field: Annotated[str, typer.Option("--field", help="The field to read.")],
    since: Annotated[
        str | None, typer.Option(help="Start: Unix seconds, ISO 8601, or a duration ago (1h, 7d).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End (exclusive), same forms as --since.")
    ] = None,
    every: Annotated[
        str | None, typer.Option(help="Bucket width (30s, 1m, 1h): one value per bucket.")
    ] = None,
    agg: Annotated[
        str | None, typer.Option(help="Per bucket: avg (default), min, max, count or last.")
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """A field's values over time, raw or aggregated per bucket."""
    with connect(url) as client:
        try:
            readings = client.telemetry.query(
                field,
                device=named(client, "devices", device),
                since=since,
                until=until,
                every=every,
                agg=agg,
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
    rows = [{"ts": r.ts.isoformat(), "value": r.value} for r in readings]
    table(rows, ["ts", "value"], as_json)
