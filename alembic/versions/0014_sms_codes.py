"""per-recipient SMS reply codes and SMS opt-outs

Revision ID: 0014_sms_codes
Revises: 0013_lifecycle
"""

from __future__ import annotations

import sqlalchemy as sa

import incidents.db
from alembic import op

revision = "0014_sms_codes"
down_revision = "0013_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each phone's short reply code per open incident (`12a` acknowledges).
    op.create_table(
        "sms_codes",
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("paged_at", incidents.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("phone", "incident_id"),
        sa.UniqueConstraint("phone", "code", name="uq_sms_codes_phone_code"),
    )
    op.create_index("ix_sms_codes_incident", "sms_codes", ["incident_id"])
    # Numbers that replied STOP (or another opt-out word) and not START since.
    op.create_table(
        "sms_opt_outs",
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("word", sa.String(length=16), nullable=False),
        sa.Column("opted_out_at", incidents.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("phone"),
    )


def downgrade() -> None:
    op.drop_table("sms_opt_outs")
    op.drop_index("ix_sms_codes_incident", table_name="sms_codes")
    op.drop_table("sms_codes")
