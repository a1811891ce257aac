"""notification outbox and threads

Revision ID: 0011_notifications
Revises: 0006_rule_v2
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import incidents.db
from alembic import op

revision = "0011_notifications"
down_revision = "0006_rule_v2"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("receiver", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", incidents.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", incidents.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", incidents.db.UTCDateTime(), nullable=False),
        sa.Column("lease_until", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("sent_at", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("provider_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("details", JSON, server_default="[]", nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_notifications_incident_id_incidents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("incident_id", "event_key", "channel", "target", name="uq_notifications"),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "channel", "not_before"])
    op.create_index("ix_notifications_incident_id", "notifications", ["incident_id"])
    op.create_table(
        "notification_threads",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("thread", JSON, nullable=False),
        sa.Column("updated_at", incidents.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_notification_threads_incident_id_incidents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "incident_id", "channel", "target", name="pk_notification_threads"
        ),
    )


def downgrade() -> None:
    op.drop_table("notification_threads")
    op.drop_index("ix_notifications_incident_id", table_name="notifications")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
