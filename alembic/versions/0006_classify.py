"""ignored alerts, incident totals and the indexes /metrics reads

Revision ID: 0005_classify
Revises: 0005_silences
Create Date: 2026-11-23 18:45:00
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = '0005_classify'
down_revision = '0005_silences'
branch_labels = None
depends_on = None

_EVENTS = ('opened', 'reopened', 'resolved')


def _where(pg: str, lite: str) -> dict[str, sa.TextClause]:
    return {'postgresql_where': sa.text(pg), 'sqlite_where': sa.text(lite)}


def upgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ignored_by', sa.Text(), nullable=True))
    op.create_index(
        'ix_alerts_ignored_status', 'alerts', ['status'],
        **_where('ignored_by IS NOT NULL', 'ignored_by IS NOT NULL'),
    )
    op.create_index(
        'ix_alert_states_silenced', 'alert_states', ['fingerprint'],
        **_where("silenced_by <> '[]'::jsonb", "silenced_by <> '[]'"),
    )
    op.create_index(
        'ix_alert_states_inhibited', 'alert_states', ['fingerprint'],
        **_where("inhibited_by <> '[]'::jsonb", "inhibited_by <> '[]'"),
    )
    op.create_index(
        'ix_incidents_status_severity_opened', 'incidents', ['status', 'severity', 'opened_at']
    )
    totals = op.create_table(
        'incident_totals',
        sa.Column('event', sa.String(length=16), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('event', name=op.f('pk_incident_totals')),
    )
    # Start from what the timeline already records, so the counters do not restart at 0.
    conn = op.get_bind()
    counted = dict(
        conn.execute(
            sa.text(
                "SELECT kind, count(*) FROM timeline"
                " WHERE kind IN ('opened', 'reopened', 'resolved') GROUP BY kind"
            )
        ).all()
    )
    op.bulk_insert(totals, [{'event': e, 'count': int(counted.get(e, 0))} for e in _EVENTS])


def downgrade() -> None:
    op.drop_table('incident_totals')
    op.drop_index('ix_incidents_status_severity_opened', table_name='incidents')
    op.drop_index('ix_alert_states_inhibited', table_name='alert_states')
    op.drop_index('ix_alert_states_silenced', table_name='alert_states')
    op.drop_index('ix_alerts_ignored_status', table_name='alerts')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_column('ignored_by')
