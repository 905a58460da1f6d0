"""The bytes of content items and of their variants, kept in the blob store like files."""

# Litestar reads handler annotations at runtime; keep them real objects (see resources.py).

import re
from typing import Any

import sqlalchemy as sa
from litestar import Request, Response, Router, get, put

from tether.server.db.engine import upsert, utcnow
from tether.server.db.pages import check_query
from tether.server.db.tables import content_data
from tether.server.files.tree import blob_response, mime_of, record_blob
from tether.server.identity.policy import allow
from tether.server.identity.scope import resolve_scope, scoped_paths
from tether.server.problems import invalid, not_found
from tether.server.resources.kinds import KINDS, load
from tether.server.state import ServerState, Tether

_VARIANT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


async def _content(request: Request[Any, Any, Any], tether: ServerState) -> tuple[str, str]:
    """The content item of the path in the caller's scope, and the variant asked for."""
    check_query(request)
    variant = request.query_params.get("variant", "")
    if variant and not _VARIANT.match(variant):
        raise invalid("A variant is 1 to 100 letters, digits or _.-", "invalid_variant")
    async with tether.reader.connect() as reads:
        org_id, project_id = await resolve_scope(reads, request, KINDS["content"].in_projects)
        row = await load(reads, KINDS["content"], org_id, project_id, request.path_params["id"])
    return row.id, variant


@put(
    scoped_paths("/content/{id:str}/data"),
    tags=["content"],
    summary="Upload a content item's bytes (or a variant's, with ?variant=)",
    request_max_body_size=None,
    opt=allow("content", "write", query=("variant",), raw_body="application/octet-stream"),
)
async def upload_content(request: Request[Any, Any, Any], tether: Tether) -> dict[str, Any]:
    content_id, variant = await _content(request, tether)
    sha256, size = await tether.blobs.receive(request.stream(), tether.settings.max_file_size)
    mime = mime_of("", request)
    now = utcnow()
    async with tether.engine.begin() as conn:
        await record_blob(conn, sha256, size, now)
        insert = upsert(conn, content_data).values(
            content_id=content_id,
            variant=variant,
            sha256=sha256,
            size=size,
            mime=mime,
            updated_at=now,
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["content_id", "variant"],
                set_={"sha256": sha256, "size": size, "mime": mime, "updated_at": now},
            )
        )
    return {"variant": variant or None, "sha256": sha256, "size": size, "mime": mime}


@get(
    scoped_paths("/content/{id:str}/data"),
    tags=["content"],
    summary="A content item's bytes (or a variant's, with ?variant=); Range supported",
    opt=allow("content", "read", query=("variant",), raw_response=True),
)
async def download_content(request: Request[Any, Any, Any], tether: Tether) -> Response[Any]:
    content_id, variant = await _content(request, tether)
    async with tether.reader.connect() as reads:
        row = (
            await reads.execute(
                sa.select(content_data).where(
                    content_data.c.content_id == content_id, content_data.c.variant == variant
                )
            )
        ).first()
    if row is None:
        raise not_found("content data" + (f" for variant {variant}" if variant else ""))
    name = f"{content_id}{'.' + variant if variant else ''}"
    return blob_response(request, tether, row.sha256, row.size, row.mime, name)


router = Router("/", route_handlers=[upload_content, download_content])
