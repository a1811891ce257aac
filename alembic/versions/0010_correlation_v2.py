"""correlation rule v2: incident roots, root-cause records, what was paged

Revision ID: 0006_rule_v2
Revises: 0006_foreign_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import incidents.db
from alembic import op

revision = "0006_rule_v2"
down_revision = "0006_foreign_keys"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("roots", JSON, server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("root_causes", JSON, server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("paged_severity", sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column("paged_at", incidents.db.UTCDateTime(), nullable=True))
    # Incidents opened before v2 paged when they opened and at each raise: what they hold
    # now is what was paged.
    op.execute(
        "UPDATE incidents SET paged_severity = severity, paged_at = updated_at "
        "WHERE status <> 'merged'"
    )


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("paged_at")
        batch_op.drop_column("paged_severity")
        batch_op.drop_column("root_causes")
        batch_op.drop_column("roots")
