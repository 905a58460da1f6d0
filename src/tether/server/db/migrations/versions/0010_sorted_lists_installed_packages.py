"""resources: an index for lists sorted by name; installed_packages: what each device has
installed, for the spread of versions across the fleet and finding devices by version

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tether.server.db.tables

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_resources_org_kind_name", "resources", ["org_id", "kind", "name", "id"])
    op.create_table(
        "installed_packages",
        sa.Column("device_id", sa.String(36), primary_key=True),
        sa.Column("reference", sa.String(200), primary_key=True),
        sa.Column(
            "org_id",
            sa.String(36),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("updated_at", tether.server.db.tables.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_installed_packages_version",
        "installed_packages",
        ["org_id", "reference", "version"],
    )


def downgrade() -> None:
    op.drop_index("ix_installed_packages_version", table_name="installed_packages")
    op.drop_table("installed_packages")
    op.drop_index("ix_resources_org_kind_name", table_name="resources")
