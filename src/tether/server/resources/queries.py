"""How a list of resources is selected: what a row shows (zone ids folded in), the
statement of one kind in the caller's scope narrowed by its filters, and the list's query
parameters (presence, installed packages, sort) turned into what that statement binds."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from tether.server.db.pages import BY_ID, Sort
from tether.server.db.reads import Reads, fetch
from tether.server.db.tables import installed_packages, resources, twins, zone_members
from tether.server.identity.seen import online_since
from tether.server.inputs import invalid_parameter, query_members
from tether.server.problems import not_found
from tether.server.resources.documents import bound as documents_bound
from tether.server.resources.documents import document_filters, narrowed_by


class comma_list(FunctionElement[str]):
    """Strings of a group joined by commas: `aggregate_strings` without its per-execution
    rendering of the separator, which showed up on the hot path."""

    type = sa.String()
    inherit_cache = True


@compiles(comma_list, "sqlite")
def _comma_list_sqlite(element: comma_list, compiler: SQLCompiler, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


@compiles(comma_list)
def _comma_list(element: comma_list, compiler: SQLCompiler, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, ',')"


ZONE_LIST = (
    sa.select(comma_list(zone_members.c.zone_id))
    .where(zone_members.c.member_id == resources.c.id)
    .scalar_subquery()
    .label("zone_list")
)


_SHOWN = [c for c in resources.c if c.name not in ("org_id", "secret_hash")]


def select_resources() -> sa.Select[Any]:
    """What the API shows of resources, with their zone ids folded in, so one query answers a
    get or a page."""
    return sa.select(*_SHOWN, ZONE_LIST)


@functools.cache
def scoped_resources(
    in_project: bool,
    filters: tuple[str, ...] = (),
    documents: tuple[tuple[str, int], ...] = (),
    online: bool | None = None,
    installed: int = 0,
    twin: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (),
) -> sa.Select[Any]:
    """Resources of one kind in the caller's scope, bound by `scope_params`, narrowed by
    `filters` (each bound as its own name), by document filters of the shapes `documents`
    (bound by `documents.bound`), by presence (`online_since`) and by `installed` packages
    (`installed_filters`) and by twin fields (per section, the shapes of its filters). Built
    once per shape: building and hashing a statement costs more than running it on the hot
    path."""
    query = select_resources().where(
        resources.c.org_id == sa.bindparam("org_id"), resources.c.kind == sa.bindparam("kind")
    )
    if in_project:
        query = query.where(resources.c.project_id == sa.bindparam("project_id"))
    for field in filters:
        if field in ("zone_id", "member_id"):
            this, other = (
                ("member_id", "zone_id") if field == "zone_id" else ("zone_id", "member_id")
            )
            members = sa.select(zone_members.c[this]).where(
                zone_members.c[other] == sa.bindparam(field)
            )
            query = query.where(resources.c.id.in_(members))
        else:
            query = query.where(resources.c[field] == sa.bindparam(field))
    if online is not None:
        since: Any = sa.bindparam("online_since", type_=resources.c.seen_at.type)
        seen = resources.c.seen_at
        query = query.where(seen >= since if online else sa.or_(seen.is_(None), seen < since))
    for i in range(installed):
        running = sa.select(installed_packages.c.device_id).where(
            installed_packages.c.org_id == sa.bindparam("org_id"),
            installed_packages.c.reference == sa.bindparam(f"installed_reference_{i}"),
            installed_packages.c.version == sa.bindparam(f"installed_version_{i}"),
        )
        query = query.where(resources.c.id.in_(running))
    for section, shapes in twin:
        held = sa.select(twins.c.device_id).where(twins.c.org_id == sa.bindparam("org_id"))
        held = narrowed_by(held, twins.c[section], shapes, prefix=section)
        query = query.where(resources.c.id.in_(held))
    return narrowed_by(query, resources.c.document, documents)


TWIN_SECTIONS = ("desired", "reported", "tags")
"""A device's twin sections, each a filter of the device list shaped like `document`."""
FILTERS = ("name", "location_id", "experience_id", "parent_id", "zone_id", "member_id")
"""The columns a list may be narrowed by, each a query parameter of the same name."""


@dataclass(frozen=True)
class Selection:
    """The resources a list's filters select: its statement (built once per shape) and what
    it binds."""

    query: sa.Select[Any]
    bound: dict[str, Any]


def selection(kind: str, org_id: str, project_id: str | None, params: Any) -> Selection:
    """The resources of `kind` in the scope that `params` (a list's query parameters, or a
    command's device filter spelled the same way) select: by column, presence, document
    fields and, for devices, installed packages."""
    filters = tuple(f for f in FILTERS if f in params)
    online = presence_filter(params.get("online"))
    documents = document_filters(params)
    installed = installed_filters(params) if kind == "device" else {}
    twin = {s: document_filters(params, s) for s in TWIN_SECTIONS} if kind == "device" else {}
    query = scoped_resources(
        project_id is not None,
        filters,
        tuple(d.shape for d in documents),
        online,
        len(installed) // 2,
        tuple((s, tuple(f.shape for f in found)) for s, found in twin.items() if found),
    )
    bound: dict[str, Any] = {"org_id": org_id, "kind": kind, "project_id": project_id}
    bound |= {f: params[f] for f in filters} | documents_bound(documents) | installed
    for section, found in twin.items():
        bound |= documents_bound(found, section)
    if online is not None:
        bound["online_since"] = online_since()
    return Selection(query, bound)


def reads_installed(params: Any) -> bool:
    """Whether a selection filters by installed packages, whose reports are written behind:
    flush them before the read that takes the snapshot."""
    return any(name.partition("[")[0] == "installed" for name in params)


_DEVICE = sa.select(resources.c.id, resources.c.project_id).where(
    resources.c.id == sa.bindparam("id"),
    resources.c.org_id == sa.bindparam("org_id"),
    resources.c.kind == "device",
)


async def device_in_scope(reads: Reads, org_id: str, project_id: str | None, device_id: str) -> Any:
    """A device (its id and project) in the caller's organization and, under a project's
    path, that project; 404 otherwise. For the areas that act on one device."""
    found = await fetch(reads, _DEVICE, {"id": device_id, "org_id": org_id})
    if not found or (project_id is not None and found[0].project_id != project_id):
        raise not_found("device")
    return found[0]


def presence_filter(raw: str | None) -> bool | None:
    """The `online` filter of a device list: true, false, or absent."""
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise invalid_parameter("online", "is true or false")
    return raw == "true"


MAX_INSTALLED_FILTERS = 3


def installed_filters(params: Mapping[str, str]) -> dict[str, str]:
    """The `installed[REFERENCE]=VERSION` filters of a device list (or `installed` as one JSON
    object), bound for `scoped_resources`: devices that said they run that version of that
    package."""
    bound: dict[str, str] = {}
    for reference, version in query_members(
        "installed", params, "a package: installed[REFERENCE]=VERSION", '{"firmware": "2.1.0"}'
    ):
        if not 1 <= len(reference) <= 200:
            raise invalid_parameter("installed", "names a package of 1 to 200 characters")
        if not 1 <= len(version) <= 100:
            raise invalid_parameter(
                f"installed[{reference}]", "is a version of 1 to 100 characters"
            )
        i = len(bound) // 2
        bound |= {f"installed_reference_{i}": reference, f"installed_version_{i}": version}
    if len(bound) > 2 * MAX_INSTALLED_FILTERS:
        raise invalid_parameter("installed", f"takes at most {MAX_INSTALLED_FILTERS} packages")
    return bound


SORTS = {
    "created": BY_ID,
    "-created": Sort(None, descending=True),
    "name": Sort(resources.c.name),
    "-name": Sort(resources.c.name, descending=True),
}
"""The orders a list may ask for (`sort=`): oldest first (ids are time-ordered) by default."""


def sort_of(raw: str | None) -> Sort:
    if raw is None:
        return BY_ID
    if raw not in SORTS:
        raise invalid_parameter("sort", f"is one of {', '.join(SORTS)}")
    return SORTS[raw]
