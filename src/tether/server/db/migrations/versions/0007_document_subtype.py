"""resources: an index on the document's subtype, for finding resources by it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SUBTYPE = {
    "sqlite": "(document -> '$.\"subtype\"')",
    "postgresql": "((jsonb_path_query_first(CAST(document AS JSONB), "
    "CAST('$.\"subtype\"' AS JSONPATH)))::text)",
}


def upgrade() -> None:
    expression = _SUBTYPE[op.get_bind().dialect.name]
    op.execute(f"CREATE INDEX ix_resources_subtype ON resources (org_id, kind, {expression}, id)")


def downgrade() -> None:
    op.drop_index("ix_resources_subtype", table_name="resources")
