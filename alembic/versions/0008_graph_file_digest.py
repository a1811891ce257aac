"""service graph: the digest of the graph file last applied

Revision ID: 0005_graph
Revises: 0005_workers
Create Date: 2026-11-23 18:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = '0005_graph'
down_revision = '0005_workers'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Kept apart from `digest`: the graph may since have been replaced through the API,
    # and an unchanged file must not overwrite that at the next start.
    with op.batch_alter_table('service_graph', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file_digest', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('service_graph', schema=None) as batch_op:
        batch_op.drop_column('file_digest')
