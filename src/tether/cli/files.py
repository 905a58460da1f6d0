"""`tether files`: put, get, ls, mkdir, mv, cp, rm and sync, with progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

import tether
from tether.cli.common import Commands, JsonOption, QuietOption, UrlOption, connect
from tether.cli.output import fail, progress_bar, record, table

app = Commands(help="Files: upload, download, list, move, copy, remove, sync.")


@app.command("put")
def put(local: Path, remote: str, url: UrlOption = None, quiet: QuietOption = False) -> None:
    """Upload a file."""
    with connect(url) as client, progress_bar(f"put {local.name}", quiet) as bar:
        info = client.files.put(local, remote, progress=bar)
    typer.echo(f"{info['path']} ({info['size']} bytes, sha256 {info['sha256'][:12]}…)")


@app.command("get")
def get(remote: str, local: Path, url: UrlOption = None, quiet: QuietOption = False) -> None:
    """Download a file (resumes a partial download). LOCAL may be a folder (the file keeps its
    name) or - for standard output."""
    if str(local) == "-":
        with connect(url) as client:
            for chunk in client.files.iter_bytes(remote):
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    if local.is_dir():
        local = local / PurePosixPath(remote).name
    with connect(url) as client, progress_bar(f"get {remote}", quiet) as bar:
        path = client.files.get(remote, local, progress=bar)
    typer.echo(str(path))


@app.command("ls")
def ls(
    remote: Annotated[str, typer.Argument()] = "/",
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a folder."""
    with connect(url) as client:
        entries = client.files.ls(remote)
    for entry in entries:
        entry["type"] = "folder" if entry["is_dir"] else entry.get("mime") or "file"
    table(entries, ["name", "type", "size", "updated_at"], as_json)


@app.command("info")
def info(remote: str, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Show a file's or folder's details."""
    with connect(url) as client:
        record(client.files.info(remote), as_json)


@app.command("mkdir")
def mkdir(remote: str, url: UrlOption = None) -> None:
    """Make a folder and its parents."""
    with connect(url) as client:
        typer.echo(client.files.mkdir(remote)["path"])


def _run(start: Callable[[tether.Client], tether.FileTask], url: str | None) -> None:
    with connect(url) as client:
        try:
            task = start(client).wait(timeout=None)
        except tether.TaskError as exc:
            raise fail(exc.message) from None
    typer.echo(f"{task.data['op']} {task.data['path']}: {task.status}")


@app.command("mv")
def mv(path: str, target: str, url: UrlOption = None) -> None:
    """Move a file or folder tree."""
    _run(lambda c: c.files.mv(path, target), url)


@app.command("cp")
def cp(path: str, target: str, url: UrlOption = None) -> None:
    """Copy a file or folder tree."""
    _run(lambda c: c.files.cp(path, target), url)


@app.command("rm")
def rm(path: str, url: UrlOption = None) -> None:
    """Remove a file or folder tree."""
    _run(lambda c: c.files.rm(path), url)


@app.command("sync")
def sync(
    source: str,
    destination: str,
    url: UrlOption = None,
    quiet: QuietOption = False,
) -> None:
    """Sync by delta: `sync LOCAL :REMOTE` uploads, `sync :REMOTE LOCAL` downloads (the side
    on the server starts with a colon)."""
    if source.startswith(":") == destination.startswith(":"):
        raise fail("Exactly one side must be remote, written with a leading colon (:/path).")
    with connect(url) as client:
        if destination.startswith(":"):
            with progress_bar(f"sync up {source}", quiet) as bar:
                result = client.files.sync_up(Path(source), destination[1:], progress=bar)
            typer.echo(f"{result['path']}: sent {result['sent']} of {result['size']} bytes")
        else:
            fetched = [0]

            with progress_bar(f"sync down {source[1:]}", quiet) as bar:

                def count(done: int, total: int | None) -> None:
                    fetched[0] = done
                    if bar is not None:
                        bar(done, total)

                path = client.files.sync_down(source[1:], Path(destination), progress=count)
            size = path.stat().st_size
            typer.echo(f"{path}: fetched {fetched[0]} bytes for {size}")
