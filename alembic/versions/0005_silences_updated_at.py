"""silences: updated_at, as Alertmanager's silence API shows it

Revision ID: 0005_silences
Revises: 0004
Create Date: 2026-11-23 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

import incidents.db

revision = '0005_silences'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('updated_at', incidents.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
