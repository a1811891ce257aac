"""notification attempts in doubt, and the provider's delivery status

Revision ID: 0012_delivery_reconcile
Revises: 0011_notifications
"""

from __future__ import annotations

import sqlalchemy as sa

import incidents.db
from alembic import op

revision = "0012_delivery_reconcile"
down_revision = "0011_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        # Set, and committed, just before a provider request; cleared once its outcome is
        # known. A row that still has it may have been delivered: look before sending.
        batch.add_column(sa.Column("send_started_at", incidents.db.UTCDateTime(), nullable=True))
        # What identifies that request at the provider (a digest of an SMS body).
        batch.add_column(sa.Column("send_key", sa.String(length=64), nullable=True))
        # The provider's own word on delivery after acceptance (Twilio status callbacks).
        batch.add_column(sa.Column("provider_status", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("provider_status")
        batch.drop_column("send_key")
        batch.drop_column("send_started_at")
