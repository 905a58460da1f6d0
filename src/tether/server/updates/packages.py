"""Packages: versioned files a fleet installs, and the organization's key that signs them.

A version is published once (versions are immutable): its bytes stream into the blob store,
its SHA-256 and size are recorded, and it is signed, by the server when it holds the
organization's key, or by the publisher, whose signature is checked against the registered
public key before the version is accepted. Which devices get which version is up to
deployments (`deployments.py`); devices fetch through `updates.py`.
"""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace
from typing import Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Response, Router, delete, get, post, put
from litestar.params import FromPath, JSONBody

from tether._versions import canonical_version
from tether.server.db.engine import new_id, upsert, utcnow
from tether.server.db.pages import Page, filters_of, list_page, narrowed, page_limit
from tether.server.db.reads import Reads
from tether.server.db.tables import deployments, package_versions, update_keys
from tether.server.files.blobs import blob_response, record_blob
from tether.server.identity.policy import allow
from tether.server.identity.scope import principal_of
from tether.server.inputs import decode_json
from tether.server.problems import Problem, conflict, invalid, not_found
from tether.server.realtime.events import Event
from tether.server.state import ServerState, Tether
from tether.signing import SigningKey, public_key_of, verify_package

_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_FILENAME = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")
MAX_METADATA = 8192
LIVE_STATES = ("active", "paused")


class PackageVersionOut(msgspec.Struct, omit_defaults=True):
    id: str
    reference: str
    version: str
    filename: str
    size: int
    sha256: str
    metadata: dict[str, Any]
    created_at: dt.datetime
    signature: str | None = None


class SigningKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    public_key: str | None = None
    generate: bool = False


class SigningKeyOut(msgspec.Struct):
    public_key: str
    server_held: bool
    created_at: dt.datetime


def version_out(row: Any) -> PackageVersionOut:
    return PackageVersionOut(
        id=row.id,
        reference=row.reference,
        version=row.version,
        filename=row.filename,
        size=row.size,
        sha256=row.sha256,
        metadata=msgspec.json.decode(row.metadata),
        created_at=row.created_at,
        signature=row.signature,
    )


def checked_reference(reference: str) -> str:
    if not _REFERENCE.match(reference):
        raise invalid(
            "A package reference is 1 to 200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            "invalid_reference",
        )
    return reference


def checked_version(version: str) -> str:
    try:
        return canonical_version(version)
    except ValueError as exc:
        raise invalid(f"{exc}.", "invalid_version") from None


async def find_version(conn: Reads, org_id: str, reference: str, version: str) -> Any:
    row = (
        await conn.execute(
            sa.select(package_versions).where(
                package_versions.c.org_id == org_id,
                package_versions.c.reference == checked_reference(reference),
                package_versions.c.version == checked_version(version),
            )
        )
    ).first()
    if row is None:
        raise not_found("package version")
    return row


def _published(reference: str, version: str) -> Problem:
    return conflict(f"{reference} {version} is already published.", "version_exists")


def _metadata(request: Request[Any, Any, Any]) -> str:
    raw = request.headers.get("x-tether-metadata") or "{}"
    if len(raw) > MAX_METADATA:
        raise invalid(f"Metadata may be at most {MAX_METADATA} bytes.", "too_large")
    try:
        value = decode_json(raw.encode(), "X-Tether-Metadata")
    except Problem as exc:
        if exc.code != "malformed":
            raise
        raise invalid("X-Tether-Metadata must be a JSON object.") from None
    if not isinstance(value, dict):
        raise invalid("X-Tether-Metadata must be a JSON object.")
    return msgspec.json.encode(value).decode()


async def org_key(conn: Reads, org_id: str) -> Any:
    """The organization's signing key row, or None (then it does not sign its packages)."""
    found = await conn.execute(sa.select(update_keys).where(update_keys.c.org_id == org_id))
    return found.first()


async def _org_key(tether: ServerState, org_id: str) -> Any:
    async with tether.reader.connect() as reads:
        return await org_key(reads, org_id)


async def _signature(
    tether: ServerState, org_id: str, offered: str | None, message: tuple[str, str, int, str]
) -> str | None:
    """The signature a new version keeps: the server's own when it holds the key, else the
    publisher's, which must verify (and is required once the organization has a key)."""
    key = await _org_key(tether, org_id)
    if key is None:
        if offered:
            raise invalid(
                "This organization has no signing key to check the signature against.",
                "no_signing_key",
            )
        return None
    if offered:
        if not verify_package(key.public_key, offered, *message):
            raise invalid(
                "The signature does not match the organization's signing key.", "bad_signature"
            )
        return offered
    if key.private_key is None:
        raise invalid(
            "This organization signs its packages: sign the version with its private key.",
            "signature_required",
        )
    return SigningKey.from_raw(tether.sealer.open(key.private_key)).sign_package(*message)


@put(
    "/packages/{reference:str}/versions/{version:str}",
    tags=["packages"],
    summary="Publish a package version (the body is its file)",
    request_max_body_size=None,
    status_code=201,
    opt=allow("package", "write", query=("filename",), raw_body="application/octet-stream"),
)
async def publish(
    reference: FromPath[str],
    version: FromPath[str],
    request: Request[Any, Any, Any],
    tether: Tether,
) -> PackageVersionOut:
    org_id = principal_of(request).org_id
    reference = checked_reference(reference)
    version = checked_version(version)
    filename = request.query_params.get("filename") or f"{reference}-{version}"
    if not _FILENAME.match(filename) or filename in (".", ".."):
        raise invalid("The filename must be a plain file name.", "invalid_filename")
    metadata = _metadata(request)
    exists = sa.select(package_versions.c.id).where(
        package_versions.c.org_id == org_id,
        package_versions.c.reference == reference,
        package_versions.c.version == version,
    )
    async with tether.reader.connect() as reads:
        if (await reads.execute(exists)).first() is not None:
            raise _published(reference, version)
    sha256, size = await tether.blobs.receive(request.stream(), tether.settings.max_package_size)
    signature = await _signature(
        tether,
        org_id,
        request.headers.get("x-tether-signature"),
        (reference, version, size, sha256),
    )
    now = utcnow()
    row = {
        "id": new_id(),
        "org_id": org_id,
        "reference": reference,
        "version": version,
        "filename": filename,
        "sha256": sha256,
        "size": size,
        "metadata": metadata,
        "signature": signature,
        "created_at": now,
    }
    try:
        async with tether.engine.begin() as conn:
            await record_blob(conn, sha256, size, now)
            await conn.execute(package_versions.insert().values(**row))
    except sa.exc.IntegrityError:
        raise _published(reference, version) from None
    out = version_out(SimpleNamespace(**row))
    tether.bus.publish(Event(org_id, "package", "created", out.id, out))
    return out


_VERSIONS = sa.select(package_versions).where(package_versions.c.org_id == sa.bindparam("org_id"))


@get(
    "/packages",
    tags=["packages"],
    summary="Published package versions, oldest first",
    opt=allow("package", "read", query=("limit", "after", "reference")),
)
async def list_versions(request: Request[Any, Any, Any], tether: Tether) -> Page[PackageVersionOut]:
    limit = page_limit(request, tether.settings)
    given = filters_of(request, ("reference",))
    query = narrowed(_VERSIONS, package_versions, tuple(given))
    params = {"org_id": principal_of(request).org_id, **given}
    async with tether.reader.connect() as reads:
        return await list_page(
            reads, request, query, package_versions.c.id, limit, version_out, params
        )


@get(
    "/packages/{reference:str}/versions/{version:str}",
    tags=["packages"],
    summary="A package version",
    opt=allow("package", "read"),
)
async def read_version(
    reference: FromPath[str],
    version: FromPath[str],
    request: Request[Any, Any, Any],
    tether: Tether,
) -> PackageVersionOut:
    org_id = principal_of(request).org_id
    async with tether.reader.connect() as reads:
        return version_out(await find_version(reads, org_id, reference, version))


@get(
    "/packages/{reference:str}/versions/{version:str}/data",
    tags=["packages"],
    summary="A package version's file",
    opt=allow("package", "read", raw_response="ranged"),
)
async def version_data(
    reference: FromPath[str],
    version: FromPath[str],
    request: Request[Any, Any, Any],
    tether: Tether,
) -> Response[Any]:
    org_id = principal_of(request).org_id
    async with tether.reader.connect() as reads:
        row = await find_version(reads, org_id, reference, version)
    return blob_response(request, tether.blobs, row.sha256, row.size, None, row.filename)


@delete(
    "/packages/{reference:str}/versions/{version:str}",
    tags=["packages"],
    summary="Delete a package version no live deployment uses",
    opt=allow("package", "write"),
)
async def delete_version(
    reference: FromPath[str],
    version: FromPath[str],
    request: Request[Any, Any, Any],
    tether: Tether,
) -> None:
    org_id = principal_of(request).org_id
    async with tether.engine.begin() as conn:
        row = await find_version(conn, org_id, reference, version)
        live = await conn.execute(
            sa.select(deployments.c.id).where(
                deployments.c.version_id == row.id, deployments.c.state.in_(LIVE_STATES)
            )
        )
        if live.first() is not None:
            raise conflict("A deployment still rolls this version out; abort it first.", "in_use")
        await conn.execute(package_versions.delete().where(package_versions.c.id == row.id))
    tether.bus.publish(Event(org_id, "package", "deleted", row.id, None))


def _key_out(row: Any) -> SigningKeyOut:
    return SigningKeyOut(row.public_key, row.private_key is not None, row.created_at)


@get(
    "/packages/signing-key",
    tags=["packages"],
    summary="The organization's public signing key",
    opt=allow("package", "read"),
)
async def read_key(request: Request[Any, Any, Any], tether: Tether) -> SigningKeyOut:
    row = await _org_key(tether, principal_of(request).org_id)
    if row is None:
        raise not_found("signing key")
    return _key_out(row)


@post(
    "/packages/signing-key",
    tags=["packages"],
    summary="Set the organization's signing key: a public key (its owner signs) or a new "
    "key the server holds and signs with",
    status_code=201,
    opt=allow("package", "key"),
)
async def set_key(
    data: JSONBody[SigningKeyIn], request: Request[Any, Any, Any], tether: Tether
) -> SigningKeyOut:
    principal = principal_of(request)
    if data.generate == (data.public_key is not None):
        raise invalid("Give either public_key or generate: true.")
    private = None
    if data.generate:
        key = SigningKey.generate()
        public, private = key.public_key, key.raw()
    else:
        try:
            public = public_key_of(data.public_key or "")
        except ValueError as exc:
            raise invalid(f"public_key is {exc}.", "invalid_key") from None
    now = utcnow()
    async with tether.engine.begin() as conn:
        sealed = tether.sealer.seal(private) if private else None
        stored = {"public_key": public, "private_key": sealed, "created_at": now}
        await conn.execute(
            upsert(conn, update_keys)
            .values(org_id=principal.org_id, **stored)
            .on_conflict_do_update(index_elements=["org_id"], set_=stored)
        )
    return SigningKeyOut(public, private is not None, now)


router = Router(
    "/",
    route_handlers=[
        publish,
        list_versions,
        read_version,
        version_data,
        delete_version,
        read_key,
        set_key,
    ],
)
