"""targets a provider said can never be reached (invalid numbers, landlines for SMS)

Revision ID: 0017_unreachable_targets
Revises: 0016_api_keys
"""

from __future__ import annotations

import sqlalchemy as sa

import incidents.db
from alembic import op

revision = "0017_unreachable_targets"
down_revision = "0016_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Notifications to these are skipped (and the incident says so) until cleared.
    op.create_table(
        "unreachable_targets",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", incidents.db.UTCDateTime(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_unreachable_targets_incident_id_incidents",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("channel", "target", name="pk_unreachable_targets"),
    )


def downgrade() -> None:
    op.drop_table("unreachable_targets")
