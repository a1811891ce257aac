"""incident lifecycle and escalation state, config documents, heartbeats

Revision ID: 0013_lifecycle
Revises: 0012_delivery_reconcile
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import incidents.db
from alembic import op

revision = "0013_lifecycle"
down_revision = "0012_delivery_reconcile"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        # triggered, acknowledged, investigating, identified, monitoring, resolved.
        batch.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="triggered")
        )
        batch.add_column(sa.Column("state_changed_at", incidents.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("acknowledged_at", incidents.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("acknowledged_by", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("assignee", sa.String(length=255), nullable=True))
        # Monitoring after its alerts resolved: resolves by itself at this time.
        batch.add_column(sa.Column("quiet_until", incidents.db.UTCDateTime(), nullable=True))
        # The escalation policy as frozen when it first paged, and where it stands.
        batch.add_column(sa.Column("escalation", JSON, nullable=True))
        batch.add_column(
            sa.Column("escalation_due_at", incidents.db.UTCDateTime(), nullable=True)
        )
    op.execute("UPDATE incidents SET state = 'resolved' WHERE status <> 'open'")
    op.create_index("ix_incidents_escalation_due", "incidents", ["escalation_due_at"])
    op.create_index("ix_incidents_quiet_until", "incidents", ["quiet_until"])

    # Documents replaced whole by the API or the config file: users, schedules,
    # escalation policies, heartbeats.
    op.create_table(
        "config_documents",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", incidents.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind"),
    )
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("last_ping_at", incidents.db.UTCDateTime(), nullable=True),
        # When it is missed if no ping comes first (interval + grace after the last).
        sa.Column("expires_at", incidents.db.UTCDateTime(), nullable=True),
        # waiting (never pinged), alive, expired
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("updated_at", incidents.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_heartbeats_expires", "heartbeats", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_heartbeats_expires", table_name="heartbeats")
    op.drop_table("heartbeats")
    op.drop_table("config_documents")
    op.drop_index("ix_incidents_quiet_until", table_name="incidents")
    op.drop_index("ix_incidents_escalation_due", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        for column in (
            "escalation_due_at",
            "escalation",
            "quiet_until",
            "assignee",
            "acknowledged_by",
            "acknowledged_at",
            "state_changed_at",
            "state",
        ):
            batch.drop_column(column)
