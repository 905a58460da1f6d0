"""First start: migrate the schema, settle the signing key and create the first admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tether.server.db.engine import upgrade_schema
from tether.server.db.tables import organizations, server_state, update_keys
from tether.server.identity.sealed import Sealer, is_sealed
from tether.server.identity.users import UserCreate, insert_organization, insert_user
from tether.server.settings import Settings

_MIGRATION_LOCK = 7_310_001


@dataclass(frozen=True)
class FirstAdmin:
    """The admin created on first start; the password is known only when it was generated."""

    organization: str
    username: str
    password: str | None


async def _create_first_admin(conn: AsyncConnection, settings: Settings) -> FirstAdmin | None:
    if (await conn.execute(sa.select(organizations.c.id).limit(1))).first() is not None:
        return None
    org_name = settings.admin_organization or "main"
    username = settings.admin_username or "admin"
    generated = settings.admin_password is None
    password = settings.admin_password or secrets.token_urlsafe(12)
    org_id, _ = await insert_organization(conn, org_name)
    await insert_user(
        conn,
        org_id,
        UserCreate(username=username, password=password, role="admin"),
        superuser=True,
    )
    return FirstAdmin(org_name, username, password if generated else None)


async def _seal_package_keys(conn: AsyncConnection, sealer: Sealer) -> None:
    """Seal server-held package signing keys stored before sealing existed."""
    rows = await conn.execute(
        sa.select(update_keys.c.org_id, update_keys.c.private_key).where(
            update_keys.c.private_key.is_not(None)
        )
    )
    for org_id, private in list(rows):
        if not is_sealed(private):
            await conn.execute(
                update_keys.update()
                .where(update_keys.c.org_id == org_id)
                .values(private_key=sealer.seal(private))
            )


async def prepare(
    engine: AsyncEngine, settings: Settings, sealer: Sealer
) -> tuple[str, FirstAdmin | None]:
    """Everything a server needs from the database before it serves; servers take turns."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        await conn.run_sync(upgrade_schema)
        key = await signing_key(conn, settings.secret_key, sealer)
        await _seal_package_keys(conn, sealer)
        admin = await _create_first_admin(conn, settings)
    return key, admin


async def signing_key(conn: AsyncConnection, configured: str | None, sealer: Sealer) -> str:
    """The token signing key: the configured one, or one generated once and shared via the DB,
    where it is kept sealed (a key stored before sealing existed is sealed now)."""
    if configured:
        return configured
    row = await conn.execute(
        sa.select(server_state.c.value).where(server_state.c.key == "signing_key")
    )
    value = row.scalar()
    if value is not None:
        key = sealer.open(str(value))
        if not is_sealed(str(value)):
            await conn.execute(
                server_state.update()
                .where(server_state.c.key == "signing_key")
                .values(value=sealer.seal(key))
            )
        return key
    key = secrets.token_urlsafe(48)
    await conn.execute(server_state.insert().values(key="signing_key", value=sealer.seal(key)))
    return key
