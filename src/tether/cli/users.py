"""`tether users`: the organization's people, their roles and passwords (admins only)."""

from __future__ import annotations

from typing import Annotated

import typer

import tether
from tether.cli.common import Commands, JsonOption, UrlOption, connect, listed_id
from tether.cli.output import record, table

app = Commands(help="Users: list, create, change role, reset password, delete.")

PasswordOption = Annotated[
    str | None,
    typer.Option(
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="TETHER_NEW_PASSWORD",
        help="The password, 8 characters or more (prompted when not given).",
    ),
]
Role = Annotated[str, typer.Option(help="admin, member or viewer.")]


def _user_id(client: tether.Client, name_or_id: str) -> str:
    """The id of the user named `name_or_id`, or with that id."""
    return listed_id(client.get_all("users", {"limit": 500}), "user", name_or_id, "username")


@app.command("list")
def users_list(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """The organization's users and their roles."""
    with connect(url) as client:
        rows = client.get_all("users", {"limit": 500})
    table(rows, ["id", "username", "role", "created_at"], as_json)


@app.command("create")
def users_create(
    username: str,
    role: Role = "member",
    password: PasswordOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a user who signs in with a password."""
    with connect(url) as client:
        body = {"username": username, "password": password, "role": role}
        record(client.post("users", body), as_json)


@app.command("role")
def users_role(
    user: Annotated[str, typer.Argument(help="User name or id.")],
    role: Annotated[str, typer.Argument(help="admin, member or viewer.")],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a user's role."""
    with connect(url) as client:
        record(client.patch(f"users/{_user_id(client, user)}", {"role": role}), as_json)


@app.command("reset-password")
def users_reset_password(
    user: Annotated[str, typer.Argument(help="User name or id.")],
    password: PasswordOption = None,
    url: UrlOption = None,
) -> None:
    """Give a user a new password; its sign-ins and API tokens end at once."""
    with connect(url) as client:
        client.patch(f"users/{_user_id(client, user)}", {"password": password})
    typer.echo(f"New password set for {user}; its earlier sign-ins have ended.")


@app.command("delete")
def users_delete(
    user: Annotated[str, typer.Argument(help="User name or id.")], url: UrlOption = None
) -> None:
    """Delete a user; its sign-ins and API tokens end at once."""
    with connect(url) as client:
        client.delete(f"users/{_user_id(client, user)}")
    typer.echo(f"Deleted {user}.")
