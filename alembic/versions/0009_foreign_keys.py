"""foreign keys from incident_alerts, timeline and incident_services to incidents

Revision ID: 0006_foreign_keys
Revises: 0005_graph
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from alembic import op

revision = "0006_foreign_keys"
down_revision = "0005_graph"
branch_labels = None
depends_on = None

log = logging.getLogger("incidents.migrate")

# The tables whose rows belong to one incident; deleting the incident deletes them.
CHILDREN = ("incident_alerts", "timeline", "incident_services")


def _name(table: str) -> str:
    # The name the metadata's naming convention gives (fk_<table>_<column>_<referred>).
    return f"fk_{table}_incident_id_incidents"


def upgrade() -> None:
    bind = op.get_bind()
    incidents = sa.table("incidents", sa.column("id", sa.Integer()))
    for table in CHILDREN:
        rows = sa.table(table, sa.column("incident_id", sa.Integer()))
        # Rows of an incident that does not exist are never shown; the constraint
        # cannot be added while they are there.
        orphans = ~sa.exists().where(incidents.c.id == rows.c.incident_id)
        deleted = bind.execute(sa.delete(rows).where(orphans)).rowcount
        if deleted:
            log.warning("deleted %d row(s) of %s whose incident does not exist", deleted, table)
        else:
            log.info("no row of %s points at a missing incident", table)
    for table in CHILDREN:
        # On SQLite the batch copies the table into one that has the constraint.
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                op.f(_name(table)), "incidents", ["incident_id"], ["id"], ondelete="CASCADE"
            )


def downgrade() -> None:
    for table in CHILDREN:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(_name(table)), type_="foreignkey")
