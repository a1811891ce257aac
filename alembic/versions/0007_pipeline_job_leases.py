"""Pipeline job leases: lease_until and claim_token on pipeline_jobs.

Revision ID: 0005_workers
Revises: 0005_classify
Create Date: 2026-11-23 18:45:00.000000
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from alembic import op

import incidents.db

revision = "0005_workers"
down_revision = "0005_classify"
branch_labels = None
depends_on = None

# Jobs running when the upgrade happens keep the grace the old stale-claim rule gave them.
OLD_STALE_AFTER = timedelta(seconds=60)


def upgrade() -> None:
    with op.batch_alter_table("pipeline_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lease_until", incidents.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
    jobs = sa.table(
        "pipeline_jobs",
        sa.column("id", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("claimed_at", incidents.db.UTCDateTime(timezone=True)),
        sa.column("lease_until", incidents.db.UTCDateTime(timezone=True)),
    )
    bind = op.get_bind()
    running = bind.execute(
        sa.select(jobs.c.id, jobs.c.claimed_at).where(jobs.c.status == "running")
    ).all()
    for job_id, claimed_at in running:
        lease = (claimed_at or incidents.db.utcnow()) + OLD_STALE_AFTER
        bind.execute(sa.update(jobs).where(jobs.c.id == job_id).values(lease_until=lease))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_jobs", schema=None) as batch_op:
        batch_op.drop_column("claim_token")
        batch_op.drop_column("lease_until")
