"""playbook runs and their steps

Revision ID: 0015_playbooks
Revises: 0014_sms_codes
"""

from __future__ import annotations

import sqlalchemy as sa

import incidents.db
from alembic import op

revision = "0015_playbooks"
down_revision = "0014_sms_codes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "playbook_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("playbook_id", sa.String(length=128), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("trigger_key", sa.String(length=64), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("playbook", incidents.db.JSONType, nullable=False),
        sa.Column("context", incidents.db.JSONType, nullable=False),
        sa.Column("created_at", incidents.db.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("started_at", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("updated_at", incidents.db.UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("approval_step", sa.Integer(), nullable=True),
        sa.Column("approval_code", sa.Integer(), nullable=True),
        sa.Column("approval_expires_at", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("approved_steps", incidents.db.JSONType, nullable=False),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("decided_at", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("playbook_id", "incident_id", "trigger_key", name="uq_playbook_runs"),
    )
    op.create_index("ix_playbook_runs_limits", "playbook_runs", ["playbook_id", "created_at"])
    op.create_index("ix_playbook_runs_incident", "playbook_runs", ["incident_id", "playbook_id"])
    op.create_index("ix_playbook_runs_status", "playbook_runs", ["status"])
    op.create_table(
        "playbook_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("params", incidents.db.JSONType, nullable=True),
        sa.Column("result", incidents.db.JSONType, nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["playbook_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "position", name="uq_playbook_steps"),
    )


def downgrade() -> None:
    op.drop_table("playbook_steps")
    op.drop_index("ix_playbook_runs_status", table_name="playbook_runs")
    op.drop_index("ix_playbook_runs_incident", table_name="playbook_runs")
    op.drop_index("ix_playbook_runs_limits", table_name="playbook_runs")
    op.drop_table("playbook_runs")
