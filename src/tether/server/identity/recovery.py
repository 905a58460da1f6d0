"""Recovery for whoever runs the server: set a user's password straight in the database, for
the admin whose generated password was lost. It needs the server's settings (its data folder
or `TETHER_DATABASE_URL`), not a sign-in: access to those is already full access."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from tether.server.db.engine import create_engine
from tether.server.db.tables import organizations, users
from tether.server.identity.credentials import hash_password
from tether.server.identity.revocations import Revocations
from tether.server.identity.users import end_credentials
from tether.server.settings import Settings


class UnknownUser(LookupError):
    """No user of that name in that organization."""


async def reset_password(
    settings: Settings, organization: str, username: str, password: str | None = None
) -> str:
    """Give `username` of `organization` a new password (`password`, else a generated one,
    which is returned) and end every sign-in and API token it had, on every server."""
    new_password = password or secrets.token_urlsafe(12)
    engine = create_engine(settings.resolved_database_url, 1)
    try:
        async with engine.begin() as conn:
            user_id = (
                await conn.execute(
                    sa.select(users.c.id)
                    .join(organizations, organizations.c.id == users.c.org_id)
                    .where(organizations.c.name == organization, users.c.username == username)
                )
            ).scalar()
            if user_id is None:
                raise UnknownUser(f"No user {username!r} in organization {organization!r}.")
            await conn.execute(
                users.update()
                .where(users.c.id == user_id)
                .values(password_hash=await hash_password(new_password))
            )
            revocations = Revocations(engine, keep=settings.access_token_ttl + 60)
            await end_credentials(conn, revocations, user_id, tokens=True)
    finally:
        await engine.dispose()
    return new_password
