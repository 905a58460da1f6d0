"""file tasks: a lease, so one server runs a task and another takes it over only once the
lease has run out

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tether.server.db.tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("file_tasks") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=40), nullable=True))
        batch.add_column(
            sa.Column(
                "lease_until", tether.server.db.tables.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("file_tasks") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
