"""`tether projects`: the projects that divide an organization's fleet."""

from __future__ import annotations

from typing import Annotated

import typer

from tether.cli.common import (
    Commands,
    DocumentOption,
    JsonOption,
    UrlOption,
    connect,
    json_document,
    project_of,
)
from tether.cli.output import record, table

app = Commands(help="Projects: list, create, show, delete.")

ProjectArgument = Annotated[str, typer.Argument(help="Project name or id.")]


@app.command("list")
def projects_list(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """The organization's projects."""
    with connect(url) as client:
        rows = [p.data for p in client.projects.find()]
    table(rows, ["id", "name", "created_at"], as_json)


@app.command("create")
def projects_create(
    name: str, document: DocumentOption = None, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Create a project."""
    with connect(url) as client:
        record(client.projects.create(name, json_document(document)).data, as_json)


@app.command("show")
def projects_show(
    project: ProjectArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Show one project."""
    with connect(url) as client:
        record(client.projects.get(project_of(client, project)).data, as_json)


@app.command("delete")
def projects_delete(project: ProjectArgument, url: UrlOption = None) -> None:
    """Delete a project and everything in it (devices, telemetry, files, data)."""
    with connect(url) as client:
        client.projects.delete(project_of(client, project))
    typer.echo(f"Deleted project {project}.")
