"""Statements of the hot read path, compiled once and run on the database driver directly.

A GET of one device spent as long in SQLAlchemy's execution machinery (execution context,
parameter construction, result metadata, row objects) as SQLite spent answering. For a
statement built once (a module constant, or cached by shape, with `sa.bindparam`s for every
value), `Prepared` keeps its SQL text, the order of its parameters and the result processors
of its columns for one dialect, so a read is: arguments in order, the driver's call, the
processors SQLAlchemy would have applied. Rows are named tuples: `row.id`, `row[0]`.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


@dataclass(frozen=True)
class Prepared:
    """One statement compiled for one dialect."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]
    """Values the statement carries itself (literals SQLAlchemy turned into parameters)."""
    binders: Mapping[str, Callable[[Any], Any]]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    record: Callable[[Iterable[Any]], Any]

    def arguments(self, params: Mapping[str, Any] | None) -> list[Any]:
        """The statement's positional arguments, from its bind parameters by name."""
        values = {**self.fixed, **params} if params else self.fixed
        arguments = [values[name] for name in self.names]
        for position, name in enumerate(self.names):
            binder = self.binders.get(name)
            if binder is not None:
                arguments[position] = binder(arguments[position])
        return arguments

    def rows(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """Many rows of arguments already in the statement's order (`names`), converted as
        `arguments` would, for `executemany`."""
        converters = [
            (position, self.binders[name])
            for position, name in enumerate(self.names)
            if name in self.binders
        ]
        if not converters:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for position, convert in converters:
                if values[position] is not None:
                    values[position] = convert(values[position])
            converted.append(values)
        return converted

    def shape(self, raw: Iterable[Sequence[Any]]) -> list[Any]:
        """The driver's rows as named tuples holding what SQLAlchemy would have returned."""
        if not self.processors:
            return [self.record(row) for row in raw]
        shaped = []
        for row in raw:
            values = list(row)
            for position, process in self.processors:
                values[position] = process(values[position])
            shaped.append(self.record(values))
        return shaped


_FLOAT8 = 701
"""The type code of a double (every `sa.Float` column), which asyncpg's numeric result
processor asks for; sqlite3 ignores it."""


class BuiltPerRequest(ValueError):
    """A statement compiled to the SQL of one already prepared: it was built again (per
    request, say), so each call would compile it anew and the cache would grow without end."""


Statement = sa.Select[Any] | sa.Insert | sa.Update | sa.Delete
"""What can be prepared: a read, or a write whose rows the driver does not hand back."""
_prepared: dict[tuple[Statement, str], Prepared] = {}
_texts: dict[tuple[str, str], Statement] = {}


def prepare(statement: Statement, dialect: Dialect) -> Prepared:
    """`statement` compiled for `dialect`, once: statements are known by identity, so build
    them once (a module constant, or cached by shape with `sa.bindparam`s for every value).
    A second statement with the same SQL is refused with `BuiltPerRequest`."""
    found = _prepared.get((statement, dialect.name))
    if found is None:
        found = _compile(statement, dialect)
        other = _texts.setdefault((dialect.name, found.sql), statement)
        if other is not statement:
            raise BuiltPerRequest(f"statement built more than once: {found.sql[:200]}")
        _prepared[(statement, dialect.name)] = found
    return found


def _compile(statement: Statement, dialect: Dialect) -> Prepared:
    compiled = statement.compile(dialect=dialect)
    binds = compiled.binds
    if any(bind.expanding for bind in binds.values()):
        raise ValueError("prepared statements take no expanding (IN list) parameters")
    names = tuple(compiled.positiontup or ())
    fixed = {name: bind.value for name, bind in binds.items() if bind.value is not None}
    binders = {}
    for name in names:
        binder = binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if binder is not None:
            binders[name] = binder
    if not isinstance(statement, sa.Select):
        return Prepared(compiled.string, names, fixed, binders, (), tuple)
    processors = []
    for position, column in enumerate(statement.selected_columns):
        process = column.type.dialect_impl(dialect).result_processor(
            dialect, _FLOAT8 if isinstance(column.type, sa.Float) else None
        )
        if process is not None:
            processors.append((position, process))
    fields = namedtuple(  # type: ignore[misc]
        "Record", list(statement.selected_columns.keys()), rename=True
    )
    return Prepared(compiled.string, names, fixed, binders, tuple(processors), fields._make)
