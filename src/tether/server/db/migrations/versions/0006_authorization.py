"""authorization: user roles, refresh-token families, revocations, sign-in attempts, sealed keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("role", sa.String(length=10), nullable=True))
    op.execute("UPDATE users SET role = CASE WHEN is_admin THEN 'admin' ELSE 'member' END")
    with op.batch_alter_table("users") as batch:
        batch.alter_column("role", existing_type=sa.String(length=10), nullable=False)
        batch.drop_column("is_admin")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(sa.Column("family_id", sa.String(length=36), nullable=True))
    op.execute("UPDATE refresh_tokens SET family_id = id")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.alter_column("family_id", existing_type=sa.String(length=36), nullable=False)
        batch.create_index("ix_refresh_tokens_family_id", ["family_id"])
    op.create_table(
        "revocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=36), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocations")),
    )
    op.create_index("ix_revocations_revoked_at", "revocations", ["revoked_at"])
    with op.batch_alter_table("update_keys") as batch:
        batch.alter_column(
            "private_key", existing_type=sa.String(length=64), type_=sa.Text(), nullable=True
        )
    op.create_table(
        "login_attempts",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_attempts")),
    )


def downgrade() -> None:
    op.drop_table("login_attempts")
    with op.batch_alter_table("update_keys") as batch:
        batch.alter_column(
            "private_key", existing_type=sa.Text(), type_=sa.String(length=64), nullable=True
        )
    op.drop_index("ix_revocations_revoked_at", table_name="revocations")
    op.drop_table("revocations")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_index("ix_refresh_tokens_family_id")
        batch.drop_column("family_id")
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("is_admin", sa.Boolean(), nullable=True))
    op.execute("UPDATE users SET is_admin = (role = 'admin')")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("role")
