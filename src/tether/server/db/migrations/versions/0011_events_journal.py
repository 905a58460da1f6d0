"""events: the journal of recent events, for the console's overview and device pages and
`GET /api/v1/events`

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tether.server.db.tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "org_id",
            sa.String(36),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", tether.server.db.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("object_id", sa.String(500), nullable=False),
        sa.Column("device_id", sa.String(36), nullable=True),
        sa.Column("project_id", sa.String(36), nullable=True),
        sa.Column("document", sa.Text, nullable=True),
    )
    op.create_index("ix_events_org", "events", ["org_id", "id"])
    op.create_index("ix_events_device", "events", ["device_id", "id"])
    op.create_index("ix_events_project", "events", ["project_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_project", table_name="events")
    op.drop_index("ix_events_device", table_name="events")
    op.drop_index("ix_events_org", table_name="events")
    op.drop_table("events")
