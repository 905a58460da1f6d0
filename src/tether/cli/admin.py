"""`tether admin`: what whoever runs the server can do without signing in."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import Commands
from tether.cli.output import fail

app = Commands(help="Server-side recovery, run where the server's data lives.")


@app.command("reset-password")
def reset_password(
    username: Annotated[str, typer.Argument(help="The user, e.g. admin.")],
    organization: Annotated[str, typer.Option(help="The user's organization.")] = "main",
    password: Annotated[
        str | None,
        typer.Option(
            envvar="TETHER_NEW_PASSWORD",
            help="The new password, 8 characters or more (default: a generated one, shown once).",
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="The server's data folder (SQLite database).")
    ] = None,
) -> None:
    """Set a user's password in the server's database, e.g. a lost admin password.

    Reads the same settings as `tether serve` (--data or TETHER_DATABASE_URL), needs no
    sign-in, and ends the user's sign-ins and API tokens on every server."""
    try:
        from tether.server.identity.recovery import UnknownUser
        from tether.server.identity.recovery import reset_password as reset
        from tether.server.settings import Settings, SettingsError
    except ImportError:
        raise fail("This needs the server's extra: pip install 'tether[server]'") from None
    if password is not None and len(password) < 8:
        raise fail("The password must be 8 characters or more.")
    try:
        settings = Settings.load({"data": data})
    except SettingsError as exc:
        raise fail(str(exc)) from None
    if settings.database_url is None and not (settings.data / "tether.db").exists():
        raise fail(f"No Tether database in {settings.data}: give --data or TETHER_DATABASE_URL.")
    try:
        chosen = asyncio.run(reset(settings, organization, username, password))
    except UnknownUser as exc:
        raise fail(str(exc)) from None
    typer.echo(f"Password of {username!r} ({organization}) reset; its sign-ins have ended.")
    if password is None:
        typer.echo(f"Generated password (shown once): {chosen}")
