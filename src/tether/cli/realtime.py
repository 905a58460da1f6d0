"""`tether listen` and `tether broadcast`: the realtime channels from a shell."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tether.cli.common import UrlOption, connect, parse_json
from tether.cli.output import emit_json

SystemOption = Annotated[bool, typer.Option("--system", help="The system channel of that name.")]
ConsumerOption = Annotated[
    bool, typer.Option("--consumer", help="The consumer channel of that name.")
]


def listen(
    channel: str,
    event: Annotated[str, typer.Argument(help="Broadcast name; * for all.")] = "*",
    system: SystemOption = False,
    consumer: ConsumerOption = False,
    count: Annotated[int, typer.Option(help="Stop after this many (0: never).")] = 0,
    respond: Annotated[
        str | None, typer.Option(help="Answer each broadcast with this JSON.")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Print broadcasts on CHANNEL as they come, one JSON object a line."""
    answer = None if respond is None else parse_json(respond, "--respond")
    with connect(url) as client:
        listener = client.get_channel(channel, system, consumer).listen(event)
        flags = "".join(f" ({f})" for f, on in (("system", system), ("consumer", consumer)) if on)
        typer.echo(
            f"Listening to {'every broadcast' if event == '*' else repr(event)} on channel "
            f"{channel!r}{flags} at {client.url} (Ctrl-C stops)",
            err=True,
        )
        for seen, broadcast in enumerate(listener, start=1):
            typer.echo(json.dumps({"name": broadcast.name, "payload": broadcast.payload}), nl=True)
            if respond is not None:
                broadcast.respond(answer)
            if count and seen >= count:
                return


def broadcast(
    channel: str,
    event: str,
    payload: Annotated[str | None, typer.Argument(help="JSON payload.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to collect responses.")] = 2.0,
    system: SystemOption = False,
    consumer: ConsumerOption = False,
    url: UrlOption = None,
) -> None:
    """Broadcast EVENT on CHANNEL and print the answers that came back in time, each with who
    gave it (`from`: type, id, name)."""
    data = None if payload is None else parse_json(payload, "The payload")
    with connect(url) as client:
        answers = client.get_channel(channel, system, consumer).collect(event, data, timeout)
    emit_json([{"from": a.responder, "payload": a.payload} for a in answers])
    typer.echo(f"{len(answers)} answer{'' if len(answers) == 1 else 's'} in {timeout} s", err=True)
