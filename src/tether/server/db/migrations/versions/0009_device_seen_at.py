"""resources: when a device was last seen (any request or frame of its credentials), for
"online" everywhere

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tether.server.db.tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.add_column(
            sa.Column("seen_at", tether.server.db.tables.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index("ix_resources_seen", "resources", ["org_id", "kind", "seen_at"])


def downgrade() -> None:
    op.drop_index("ix_resources_seen", table_name="resources")
    with op.batch_alter_table("resources") as batch:
        batch.drop_column("seen_at")
