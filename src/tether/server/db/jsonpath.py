"""JSON inside text columns, the same on both back ends: the JSON text at a path of a
document (SQLite's `->`, PostgreSQL's jsonpath), for filters and the indexes that serve them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class document_at(FunctionElement[str]):
    """The JSON text (`"player"`, `7`, `true`) at a JSON path of a document held as text."""

    type = sa.String()
    inherit_cache = True


@compiles(document_at, "sqlite")
def _document_at_sqlite(element: document_at, compiler: SQLCompiler, **kw: Any) -> str:
    document, path = element.clauses
    return f"({compiler.process(document, **kw)} -> {compiler.process(path, **kw)})"


@compiles(document_at)
def _document_at(element: document_at, compiler: SQLCompiler, **kw: Any) -> str:
    document, path = element.clauses
    return (
        f"(jsonb_path_query_first(CAST({compiler.process(document, **kw)} AS JSONB), "
        f"CAST({compiler.process(path, **kw)} AS JSONPATH)))::text"
    )


def json_path(names: tuple[str, ...]) -> str:
    """The JSON path of a field, each name quoted: `$."address"."city"`."""
    return "$" + "".join(f'."{name}"' for name in names)


def indexed_field(column: sa.ColumnElement[str], name: str) -> document_at:
    """The expression an index on a top-level field is built on, path inlined."""
    return document_at(column, sa.literal_column(f"'{json_path((name,))}'"))
