"""Bytes attached to resources, kept in the blob store like files: a content item's (and each
of its variants'), and a location's layout image. One code path serves both."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from litestar import Request, Response, Router, get, put
from litestar.handlers import HTTPRouteHandler

from tether.server.db.engine import upsert, utcnow
from tether.server.db.tables import content_data
from tether.server.files.blobs import blob_response, record_blob
from tether.server.files.tree import mime_of
from tether.server.identity.policy import allow
from tether.server.identity.scope import resolve_scope, scoped_paths
from tether.server.problems import invalid, not_found
from tether.server.resources.kinds import KINDS, load
from tether.server.state import ServerState, Tether

_VARIANT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
LAYOUT = "layout"
"""The `content_data` variant that holds a location's layout image."""


@dataclass(frozen=True)
class Attachment:
    """Bytes a kind of resource carries at `suffix`: with `variants`, chosen by `?variant=`,
    else always the one `variant`."""

    kind: str
    suffix: str
    what: str
    variants: bool = False
    variant: str = ""


ATTACHMENTS = (
    Attachment("content", "data", "a content item's bytes (or a variant's, with ?variant=)", True),
    Attachment("location", "layout", "a location's layout image", variant=LAYOUT),
)


async def _target(
    request: Request[Any, Any, Any], tether: ServerState, attachment: Attachment
) -> tuple[str, str]:
    """The resource of the path in the caller's scope, and the variant its bytes are kept as."""
    variant = attachment.variant
    if attachment.variants:
        variant = request.query_params.get("variant", "")
        if variant and not _VARIANT.match(variant):
            raise invalid("A variant is 1 to 100 letters, digits or _.-", "invalid_variant")
    kind = KINDS[attachment.kind]
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request, kind.in_projects)
        row = await load(reads, kind, org_id, project_id, request.path_params["id"])
    return row.id, variant


def _handlers(attachment: Attachment) -> list[HTTPRouteHandler]:
    kind = KINDS[attachment.kind]
    paths = scoped_paths(f"/{kind.plural}/{{id:str}}/{attachment.suffix}")
    query = ("variant",) if attachment.variants else ()

    async def upload(request: Request[Any, Any, Any], tether: Tether) -> dict[str, Any]:
        owner_id, variant = await _target(request, tether, attachment)
        sha256, size = await tether.blobs.receive(request.stream(), tether.settings.max_file_size)
        mime = mime_of("", request)
        now = utcnow()
        async with tether.engine.begin() as conn:
            await record_blob(conn, sha256, size, now)
            stored = {"sha256": sha256, "size": size, "mime": mime, "updated_at": now}
            insert = upsert(conn, content_data).values(
                content_id=owner_id, variant=variant, **stored
            )
            await conn.execute(
                insert.on_conflict_do_update(index_elements=["content_id", "variant"], set_=stored)
            )
        shown = variant if attachment.variants and variant else None
        return {"variant": shown, "sha256": sha256, "size": size, "mime": mime}

    async def download(request: Request[Any, Any, Any], tether: Tether) -> Response[Any]:
        owner_id, variant = await _target(request, tether, attachment)
        async with tether.reader.connect() as reads:
            row = (
                await reads.execute(
                    sa.select(content_data).where(
                        content_data.c.content_id == owner_id, content_data.c.variant == variant
                    )
                )
            ).first()
        if row is None:
            chosen = f" for variant {variant}" if attachment.variants and variant else ""
            raise not_found(f"{attachment.kind} {attachment.suffix}{chosen}")
        name = f"{owner_id}{'.' + variant if variant else ''}"
        return blob_response(request, tether.blobs, row.sha256, row.size, row.mime, name)

    tags = [kind.plural]
    return [
        put(
            paths,
            tags=tags,
            summary=f"Upload {attachment.what}",
            name=f"{kind.name}-{attachment.suffix}-upload",
            request_max_body_size=None,
            opt=allow(kind.name, "write", query=query, raw_body="application/octet-stream"),
        )(upload),
        get(
            paths,
            tags=tags,
            summary=f"Download {attachment.what}; Range supported",
            name=f"{kind.name}-{attachment.suffix}-download",
            opt=allow(kind.name, "read", query=query, raw_response="ranged"),
        )(download),
    ]


router = Router("/", route_handlers=[h for a in ATTACHMENTS for h in _handlers(a)])
