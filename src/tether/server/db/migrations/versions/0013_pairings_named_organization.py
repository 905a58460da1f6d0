"""pairings: the organization a waiting device asked to join and where it asked from, so that
organization's people see it waiting

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pairings") as batch:
        batch.add_column(sa.Column("wants_org_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("address", sa.String(100), nullable=True))
    op.create_index("ix_pairings_wants_org", "pairings", ["wants_org_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_pairings_wants_org", table_name="pairings")
    with op.batch_alter_table("pairings") as batch:
        batch.drop_column("address")
        batch.drop_column("wants_org_id")
