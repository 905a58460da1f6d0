"""Finding resources by their document's fields: `GET /feeds?document[subtype]=weather`.

A filter names a field (`document[address.city]` for a nested one) and a value; it matches
where the field holds that string, or, when the value reads as a JSON number, `true`, `false`
or `null`, that value too (`document[level]=7` matches 7 and "7"). Fields are compared as the
JSON text of their value on both back ends (SQLite's `->`, PostgreSQL's jsonpath), so the two
agree. `subtype`, which every EXP resource has, is indexed (with `id` after it, so a page of
matches is read in order straight from the index); other fields are scanned within the
organization's resources of that kind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa

from tether.server.db.jsonpath import document_at, indexed_field, json_path
from tether.server.inputs import invalid_parameter, query_members

MAX_FILTERS = 5
MAX_DEPTH = 8
MAX_VALUE = 1000
INDEXED = ("subtype",)
"""Top-level fields with an index of their own (migration 0007)."""
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


@dataclass(frozen=True)
class DocumentFilter:
    """One `document[field]=value` of a request."""

    path: tuple[str, ...]
    matches: tuple[str, ...]
    """The JSON texts the field may hold."""

    @property
    def shape(self) -> tuple[str, int]:
        """What the statement depends on: the indexed field named ("" for any other field,
        whose path is bound) and how many texts it compares with. An indexed field is compared
        with `=` when it can be, so the index also gives the page's order; other fields always
        with two texts (the one repeated), so few statements serve every request."""
        if len(self.path) == 1 and self.path[0] in INDEXED:
            return self.path[0], len(self.matches)
        return "", 2


def document_filters(params: Mapping[str, str], name: str = "document") -> list[DocumentFilter]:
    """The document filters among a request's query parameters (`document[FIELD]=VALUE`, or
    `document` as one JSON object; `name` for another JSON column, a twin's `desired`, say),
    checked; 422 `invalid_parameter` naming the one that is not a field name and value."""
    found = []
    for field, value in query_members(
        name, params, f"a field: {name}[FIELD]=VALUE", '{"subtype": "player"}'
    ):
        key = f"{name}[{field}]"
        names = tuple(field.split("."))
        if len(names) > MAX_DEPTH or not all(_NAME.match(n) for n in names):
            raise invalid_parameter(
                key, f"names a field as letters, digits, _ and -, at most {MAX_DEPTH} deep (a.b)"
            )
        if len(value) > MAX_VALUE:
            raise invalid_parameter(key, f"is longer than {MAX_VALUE} characters")
        found.append(DocumentFilter(names, _matches(value)))
    if len(found) > MAX_FILTERS:
        raise invalid_parameter(name, f"takes at most {MAX_FILTERS} fields")
    return sorted(found, key=lambda f: (f.shape, f.path))


def _matches(value: str) -> tuple[str, ...]:
    texts = [msgspec.json.encode(value).decode()]
    try:
        literal = msgspec.json.decode(value)
    except msgspec.DecodeError:
        literal = value
    if literal is None or isinstance(literal, bool | int | float):
        texts.append(msgspec.json.encode(literal).decode())
    return tuple(texts)


def narrowed_by(
    query: sa.Select[Any],
    column: sa.ColumnElement[str],
    shapes: tuple[tuple[str, int], ...],
    prefix: str = "doc",
) -> sa.Select[Any]:
    """`query` narrowed by document filters of these shapes, bound by `bound()` (with the
    same `prefix` for each JSON column filtered in one statement)."""
    for position, (field, count) in enumerate(shapes):
        at = (
            indexed_field(column, field)
            if field
            else document_at(column, sa.bindparam(f"{prefix}_path_{position}"))
        )
        values: list[Any] = [sa.bindparam(f"{prefix}_{position}_{n}") for n in range(count)]
        query = query.where(at == values[0] if count == 1 else at.in_(values))
    return query


def bound(filters: list[DocumentFilter], prefix: str = "doc") -> dict[str, str]:
    """The bind parameters of `narrowed_by` for these filters."""
    params = {}
    for position, found in enumerate(filters):
        params[f"{prefix}_path_{position}"] = json_path(found.path)
        for n in range(found.shape[1]):
            params[f"{prefix}_{position}_{n}"] = found.matches[min(n, len(found.matches) - 1)]
    return params
