"""The EXP resource model: devices, things, locations, zones, experiences, feeds, content,
projects and apps, served by one code path.

Each kind is declared once (`KINDS`): which relations it has, whether it holds a secret. From
that declaration this module builds typed request bodies (unknown fields rejected) and the five
endpoints of the kind, mounted both organization-wide (`/api/v1/devices`) and inside a project
(`/api/v1/projects/{project_id}/devices`).
"""

# No `from __future__ import annotations` here: handlers are built per kind in closures, and
# Litestar reads their annotations at runtime, so they must be real objects, not strings.

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Router, delete, get, patch, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.server.db.cascades import Gone, forget, on_delete
from tether.server.db.engine import RowView, new_id, utcnow
from tether.server.db.pages import Page, list_page, page_limit
from tether.server.db.reads import Reads, fetch
from tether.server.db.tables import (
    resources,
    zone_members,
)
from tether.server.identity.credentials import digest, new_secret
from tether.server.identity.policy import allow
from tether.server.identity.scope import resolve_scope
from tether.server.identity.seen import online_since
from tether.server.identity.sessions import revoke_principal
from tether.server.problems import invalid, not_found
from tether.server.realtime.events import Event
from tether.server.resources.queries import (
    reads_installed,
    scoped_resources,
    selection,
    sort_of,
)
from tether.server.state import ServerState, Tether

Name = Annotated[str, msgspec.Meta(max_length=200)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=36)]
API = "/api/v1"


def _content_links(row_id: str, document: dict[str, Any]) -> dict[str, Any]:
    base = f"{API}/content/{row_id}/data"
    names = document.get("variants") or []
    variants = {str(n): f"{base}?variant={n}" for n in names if isinstance(n, str)}
    return {"url": base, "variants": variants}


def _location_links(row_id: str, _document: dict[str, Any]) -> dict[str, Any]:
    return {"layout_url": f"{API}/locations/{row_id}/layout"}


DEVICE_FILTERS = frozenset({"online", "installed", "desired", "reported", "tags"})
"""What only a device list filters by: presence, installed packages, twin fields."""


@dataclass(frozen=True)
class Kind:
    """What distinguishes one resource kind from another, as data: a new kind is a
    declaration here (and, for what is its own, a module of its own)."""

    name: str
    plural: str
    placed: bool = False
    located: bool = False
    parented: bool = False
    credential: bool = False
    in_projects: bool = True
    own_filters: frozenset[str] = frozenset()
    """List filters beyond the relations every kind of its shape has."""
    own_fields: tuple[tuple[str, Any, Any], ...] = ()
    """Fields of its create and update bodies beyond name, document and relations."""
    presence: bool = False
    """Whether it is seen online (`seen_at`, `online`): a device."""
    actions: tuple[tuple[str, str], ...] = ()
    """The policy action of each verb that is not `write` (list and get always read)."""
    self_target: bool = False
    """Whether its `id` path parameter is the target of a SELF reach (a device's own)."""
    item_param: str = "id"
    links: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
    """URLs its answers carry beside its fields (content's bytes, a location's layout)."""

    @property
    def filters(self) -> frozenset[str]:
        names = {"name"}
        if self.placed:
            names |= {"location_id", "experience_id", "zone_id"}
        if self.located:
            names |= {"location_id", "member_id"}
        if self.parented:
            names |= {"parent_id"}
        return frozenset(names) | self.own_filters


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "device",
            "devices",
            placed=True,
            credential=True,
            own_filters=DEVICE_FILTERS,
            presence=True,
            actions=(
                ("create", "manage"),
                ("delete", "manage"),
                ("update", "update"),
                ("rotate", "rotate"),
            ),
            self_target=True,
        ),
        Kind("thing", "things", placed=True),
        Kind("location", "locations", links=_location_links),
        Kind("zone", "zones", located=True),
        Kind("experience", "experiences"),
        Kind("feed", "feeds"),
        Kind("content", "content", parented=True, links=_content_links),
        Kind("app", "apps", credential=True, own_fields=(("read_only", bool, False),)),
        Kind(
            "project",
            "projects",
            in_projects=False,
            actions=(("delete", "delete"),),
            item_param="project_id",
        ),
    )
}

_REFERENCES = {"location_id": "location", "experience_id": "experience", "parent_id": "content"}


class ResourceOut(msgspec.Struct, omit_defaults=True):
    """A resource as the API shows it; relation fields appear where the kind has them."""

    id: str
    kind: str
    name: str
    document: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    project_id: str | None = None
    location_id: str | None = None
    experience_id: str | None = None
    zone_ids: list[str] | None = None
    parent_id: str | None = None
    read_only: bool | None = None
    url: str | None = None
    variants: dict[str, str] | None = None
    layout_url: str | None = None
    seen_at: dt.datetime | None = None
    online: bool | None = None
    secret: str | None = None


def _fields(kind: Kind) -> list[tuple[str, Any, Any]]:
    fields: list[tuple[str, Any, Any]] = [
        ("name", Name, ""),
        ("document", dict[str, Any], msgspec.field(default_factory=dict)),
    ]
    if kind.placed:
        fields += [
            ("location_id", Id | None, None),
            ("experience_id", Id | None, None),
            (
                "zone_ids",
                Annotated[list[Id], msgspec.Meta(max_length=100)],
                msgspec.field(default_factory=list),
            ),
        ]
    if kind.located:
        fields.append(("location_id", Id | None, None))
    if kind.parented:
        fields.append(("parent_id", Id | None, None))
    return fields + list(kind.own_fields)


def _title(kind: Kind) -> str:
    return kind.name.title()


def create_body(kind: Kind) -> type[msgspec.Struct]:
    return msgspec.defstruct(f"{_title(kind)}Create", _fields(kind), forbid_unknown_fields=True)


def update_body(kind: Kind) -> type[msgspec.Struct]:
    fields = [(name, tp | msgspec.UnsetType, msgspec.UNSET) for name, tp, _ in _fields(kind)]
    return msgspec.defstruct(f"{_title(kind)}Update", fields, forbid_unknown_fields=True)


def to_out(row: Any, zone_ids: list[str] | None = None, secret: str | None = None) -> ResourceOut:
    """The API shape of a resource row (a result row, or a `RowView` of the values inserted)."""
    kind = KINDS[row.kind]
    document = msgspec.json.decode(row.document)
    if zone_ids is None and kind.placed:
        listed = row.zone_list
        zone_ids = sorted(listed.split(",")) if listed else []
    seen = {}
    if kind.presence:
        seen_at = row.seen_at
        seen = {"seen_at": seen_at, "online": seen_at is not None and seen_at >= online_since()}
    return ResourceOut(
        row.id,
        kind.name,
        row.name,
        document,
        row.created_at,
        row.updated_at,
        row.project_id,
        row.location_id,
        row.experience_id,
        zone_ids if kind.placed else None,
        row.parent_id,
        row.read_only,
        secret=secret,
        **(kind.links(row.id, document) if kind.links else {}),
        **seen,
    )


async def check_references(
    conn: AsyncConnection, org_id: str, project_id: str | None, values: dict[str, Any]
) -> None:
    """Every id a resource points at must be an object of the right kind in the same scope."""
    wanted: dict[str, str] = {}
    for field, kind in _REFERENCES.items():
        if values.get(field):
            wanted[values[field]] = kind
    for zone_id in values.get("zone_ids") or []:
        wanted[zone_id] = "zone"
    if not wanted:
        return
    query = sa.select(resources.c.id, resources.c.kind).where(
        resources.c.org_id == org_id, resources.c.id.in_(list(wanted))
    )
    if project_id is not None:
        query = query.where(resources.c.project_id == project_id)
    found = {row.id: row.kind for row in await conn.execute(query)}
    for ref_id, kind in wanted.items():
        if found.get(ref_id) != kind:
            raise invalid(f"{ref_id} is not a {kind} here.", "invalid_reference")


async def insert_resource(
    conn: AsyncConnection,
    *,
    org_id: str,
    kind: str,
    project_id: str | None,
    name: str,
    document: dict[str, Any],
    **columns: Any,
) -> ResourceOut:
    """Store a new resource (with its zone memberships) and return it as the API shows it."""
    now = utcnow()
    spec = KINDS[kind]
    zone_ids: list[str] = list(dict.fromkeys(columns.pop("zone_ids", None) or []))
    secret = new_secret() if spec.credential else None
    row = {
        "id": new_id(),
        "org_id": org_id,
        "kind": kind,
        "project_id": project_id,
        "name": name,
        "document": msgspec.json.encode(document).decode(),
        "location_id": None,
        "experience_id": None,
        "parent_id": None,
        "secret_hash": digest(secret) if secret else None,
        "read_only": columns.pop("read_only", False) if kind == "app" else None,
        "created_at": now,
        "updated_at": now,
        "seen_at": None,
    } | columns
    await conn.execute(resources.insert().values(row))
    if zone_ids:
        await conn.execute(
            zone_members.insert(), [{"zone_id": z, "member_id": row["id"]} for z in zone_ids]
        )
    return to_out(RowView(row), zone_ids, secret)


def scope_params(kind: Kind, org_id: str, project_id: str | None) -> dict[str, Any]:
    return {"org_id": org_id, "kind": kind.name, "project_id": project_id}


_ONE = {p: scoped_resources(p).where(resources.c.id == sa.bindparam("id")) for p in (False, True)}


async def load(conn: Reads, kind: Kind, org_id: str, project_id: str | None, row_id: str) -> Any:
    params = scope_params(kind, org_id, project_id) | {"id": row_id}
    found = await fetch(conn, _ONE[project_id is not None], params)
    if not found:
        raise not_found(kind.name)
    return found[0]


def rule_of(kind: Kind, verb: str) -> dict[str, Any]:
    """The policy rule a kind's endpoint obeys (`verb`: list, get, create, update, delete or
    rotate), with the path parameter that names a device for its SELF reach."""
    query = (
        {"query": ("limit", "after", "sort", "document", *sorted(kind.filters))}
        if verb == "list"
        else {}
    )
    action = "read" if verb in ("list", "get") else dict(kind.actions).get(verb, "write")
    return allow(kind.name, action, target="id" if kind.self_target else None, **query)


def item_id(request: Request[Any, Any, Any], kind: Kind) -> str:
    return str(request.path_params[kind.item_param])


async def _forget(
    conn: AsyncConnection, tether: ServerState, org_id: str, kind: Kind, row_id: str
) -> None:
    """Drop what pointed at a deleted resource, so nothing dangles, and let every area forget
    what it kept for it (`db.cascades`: credentials, telemetry, update reports, files, ...)."""
    await forget(conn, tether, org_id, kind.name, [row_id])
    for field in ("location_id", "experience_id", "parent_id"):
        if _REFERENCES[field] == kind.name:
            column = resources.c[field]
            await conn.execute(resources.update().where(column == row_id).values({field: None}))


@on_delete("project")
async def _forget_held(gone: Gone) -> None:
    """A deleted project takes the resources it held with it, each forgotten as if deleted
    alone (so their credentials, telemetry and reports go too)."""
    held = (
        await gone.conn.execute(
            sa.select(resources.c.id, resources.c.kind).where(resources.c.project_id.in_(gone.ids))
        )
    ).all()
    for kind in sorted({r.kind for r in held}):
        ids = [r.id for r in held if r.kind == kind]
        await forget(gone.conn, gone.state, gone.org_id, kind, ids)
    await gone.conn.execute(resources.delete().where(resources.c.project_id.in_(gone.ids)))


def _paths(kind: Kind, item: bool) -> list[str]:
    base = f"/{kind.plural}"
    paths = [base, f"/projects/{{project_id:str}}{base}"] if kind.in_projects else [base]
    return [f"{p}/{{{kind.item_param}:str}}" for p in paths] if item else paths


def kind_handlers(kind: Kind) -> list[HTTPRouteHandler]:
    """The list, create, get, update and delete endpoints of one kind."""
    create_type = create_body(kind)
    update_type = update_body(kind)
    tag = [kind.plural]

    async def list_(request: Request[Any, Any, Any], tether: Tether) -> Page[ResourceOut]:
        limit = page_limit(request, tether.settings)
        params = request.query_params
        sort = sort_of(params.get("sort"))
        if reads_installed(params):
            await tether.installed.flush()
        async with tether.reader.connect() as conn:
            org_id, project_id = await resolve_scope(conn, request, kind.in_projects)
            chosen = selection(kind.name, org_id, project_id, params)
            return await list_page(
                conn, request, chosen.query, resources.c.id, limit, to_out, chosen.bound, sort
            )

    async def create(
        request: Request[Any, Any, Any],
        tether: Tether,
        data: JSONBody[create_type],  # type: ignore[valid-type]
    ) -> ResourceOut:
        values = msgspec.structs.asdict(data)
        async with tether.engine.begin() as conn:
            org_id, project_id = await resolve_scope(conn, request, kind.in_projects)
            await check_references(conn, org_id, project_id, values)
            out = await insert_resource(
                conn, org_id=org_id, kind=kind.name, project_id=project_id, **values
            )
        tether.bus.publish(Event(org_id, kind.name, "created", out.id, out))
        return out

    async def read(request: Request[Any, Any, Any], tether: Tether) -> ResourceOut:
        async with tether.reader.point() as conn:
            org_id, project_id = await resolve_scope(conn, request, kind.in_projects)
            row = await load(conn, kind, org_id, project_id, item_id(request, kind))
        return to_out(row)

    async def update(
        request: Request[Any, Any, Any],
        tether: Tether,
        data: JSONBody[update_type],  # type: ignore[valid-type]
    ) -> ResourceOut:
        values = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        async with tether.engine.begin() as conn:
            org_id, project_id = await resolve_scope(conn, request, kind.in_projects)
            row = await load(conn, kind, org_id, project_id, item_id(request, kind))
            await check_references(conn, org_id, row.project_id, values)
            zone_ids = values.pop("zone_ids", None)
            if "document" in values:
                values["document"] = msgspec.json.encode(values["document"]).decode()
            values["updated_at"] = utcnow()
            await conn.execute(resources.update().where(resources.c.id == row.id).values(values))
            if zone_ids is not None:
                await conn.execute(zone_members.delete().where(zone_members.c.member_id == row.id))
                if zone_ids:
                    await conn.execute(
                        zone_members.insert(),
                        [{"zone_id": z, "member_id": row.id} for z in dict.fromkeys(zone_ids)],
                    )
            row = await load(conn, kind, org_id, project_id, row.id)
        out = to_out(row)
        tether.bus.publish(Event(org_id, kind.name, "updated", out.id, out))
        return out

    async def remove(request: Request[Any, Any, Any], tether: Tether) -> None:
        async with tether.engine.begin() as conn:
            org_id, project_id = await resolve_scope(conn, request, kind.in_projects)
            row = await load(conn, kind, org_id, project_id, item_id(request, kind))
            await _forget(conn, tether, org_id, kind, row.id)
            await conn.execute(resources.delete().where(resources.c.id == row.id))
        tether.bus.publish(Event(org_id, kind.name, "deleted", row.id, None))

    handlers: list[HTTPRouteHandler] = [
        get(
            _paths(kind, False),
            tags=tag,
            summary=f"List {kind.plural}",
            name=f"{kind.name}-list",
            opt=rule_of(kind, "list"),
        )(list_),
        post(
            _paths(kind, False),
            tags=tag,
            summary=f"Create a {kind.name}",
            name=f"{kind.name}-create",
            opt=rule_of(kind, "create"),
        )(create),
        get(
            _paths(kind, True),
            tags=tag,
            summary=f"Get a {kind.name}",
            name=f"{kind.name}-get",
            opt=rule_of(kind, "get"),
        )(read),
        patch(
            _paths(kind, True),
            tags=tag,
            summary=f"Update a {kind.name}",
            name=f"{kind.name}-update",
            opt=rule_of(kind, "update"),
        )(update),
        delete(
            _paths(kind, True),
            tags=tag,
            summary=f"Delete a {kind.name}",
            name=f"{kind.name}-delete",
            opt=rule_of(kind, "delete"),
        )(remove),
    ]
    if kind.credential:
        handlers.append(_rotate_secret_handler(kind))
    return handlers


def _rotate_secret_handler(kind: Kind) -> HTTPRouteHandler:
    async def rotate(request: Request[Any, Any, Any], tether: Tether) -> ResourceOut:
        secret = new_secret()
        async with tether.engine.begin() as conn:
            org_id, project_id = await resolve_scope(conn, request, kind.in_projects)
            row = await load(conn, kind, org_id, project_id, item_id(request, kind))
            await conn.execute(
                resources.update()
                .where(resources.c.id == row.id)
                .values(secret_hash=digest(secret), updated_at=utcnow())
            )
            await revoke_principal(conn, tether.revocations, row.id)
            row = await load(conn, kind, org_id, project_id, row.id)
        return to_out(row, secret=secret)

    return post(
        [f"{p}/secret" for p in _paths(kind, True)],
        tags=[kind.plural],
        status_code=200,
        summary=f"Issue a new secret for a {kind.name} (the old one and its sessions stop)",
        name=f"{kind.name}-secret",
        opt=rule_of(kind, "rotate"),
    )(rotate)


def build_router() -> Router:
    handlers: list[HTTPRouteHandler] = []
    for kind in KINDS.values():
        handlers.extend(kind_handlers(kind))
    return Router("/", route_handlers=handlers)
