"""How the CLI prints: tables for people, JSON with `--json`, problems on stderr."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


COPIED = frozenset(
    {"id", "token", "secret", "device_id", "device_secret", "api_key", "user_code", "sha256"}
)
"""Columns whose values people copy: shown whole (folded onto another line at worst), never
cut to an ellipsis to fit the terminal."""


def table(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], as_json: bool, title: str | None = None
) -> None:
    rows = list(rows)
    if as_json:
        emit_json(rows)
        return
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    view = Table(title=title)
    folded = []
    for index, column in enumerate(columns):
        widest = max((len(r[index]) for r in cells), default=0)
        if column in COPIED and widest <= 36:
            view.add_column(column, no_wrap=True, min_width=max(widest, len(column)))
        elif column in COPIED:
            view.add_column(column, overflow="fold")
            folded.append(index)
        else:
            view.add_column(column)
    for row_cells in cells:
        view.add_row(
            *(Text(v, overflow="fold") if i in folded else v for i, v in enumerate(row_cells))
        )
    _print(view)


def _print(view: Table) -> None:
    """A table on a terminal fits its width; piped or redirected, every cell is written whole
    (no `fir…`) between plain spaces, so `grep` and `awk` see the real values."""
    if console.is_terminal:
        console.print(view)
    else:
        view.box = None
        Console(width=100_000, no_color=True, highlight=False).print(view)


def record(value: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(value)
        return
    view = Table(show_header=False)
    view.add_column("field", style="bold", no_wrap=True)
    view.add_column("value", overflow="fold")
    for key, item in value.items():
        shown = json.dumps(item) if isinstance(item, dict | list) else str(item)
        view.add_row(key, shown)
    _print(view)


@contextmanager
def progress_bar(label: str, quiet: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """A transfer bar on stderr, fed by the SDK's progress callback."""
    if quiet:
        yield None
        return
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=errors, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]Error:[/red] {escape(message)}")
    return typer.Exit(code)
