"""twins: each device's desired, reported and tags with versions, and their history

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.server.db.tables import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _org() -> sa.Column[str]:
    return sa.Column(
        "org_id",
        sa.String(36),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "twins",
        sa.Column("device_id", sa.String(36), primary_key=True),
        _org(),
        sa.Column("project_id", sa.String(36), nullable=True),
        sa.Column("desired", sa.Text, nullable=False),
        sa.Column("reported", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("desired_version", sa.Integer, nullable=False),
        sa.Column("reported_version", sa.Integer, nullable=False),
        sa.Column("tags_version", sa.Integer, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("pending", sa.Integer, nullable=False),
        sa.Column("clear_when_reported", sa.Boolean, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_twins_org", "twins", ["org_id", "pending"])
    op.create_table(
        "twin_changes",
        sa.Column("id", sa.String(36), primary_key=True),
        _org(),
        sa.Column("device_id", sa.String(36), nullable=False),
        sa.Column("section", sa.String(10), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("patch", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("by", sa.String(300), nullable=False),
        sa.Column("report_id", sa.String(64), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_twin_changes_device", "twin_changes", ["device_id", "section", "version"])
    op.create_index("ix_twin_changes_at", "twin_changes", ["device_id", "at"])
    op.create_index(
        "ix_twin_changes_report",
        "twin_changes",
        ["device_id", "report_id"],
        unique=True,
        sqlite_where=sa.text("report_id IS NOT NULL"),
        postgresql_where=sa.text("report_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("twin_changes")
    op.drop_table("twins")
