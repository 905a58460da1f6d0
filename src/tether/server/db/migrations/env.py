"""Alembic environment: runs on the connection the server hands over."""

from __future__ import annotations

from alembic import context

from tether.server.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Tether runs its migrations itself: use `tether migrate`.")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
