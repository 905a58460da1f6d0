"""oauth_codes: authorization codes for registered apps (OAuth 2.0 with PKCE); refresh tokens
remember whether they are read-only and which app they were issued to

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tether.server.db.tables

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(sa.Column("read_only", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("client_id", sa.String(36), nullable=True))
    op.create_table(
        "oauth_codes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "org_id",
            sa.String(36),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("read_only", sa.Boolean, nullable=False),
        sa.Column("expires_at", tether.server.db.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", tether.server.db.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("family_id", sa.String(36), nullable=True),
        sa.Column("created_at", tether.server.db.tables.UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("oauth_codes")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("client_id")
        batch.drop_column("read_only")
