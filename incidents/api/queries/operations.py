"""The figures /metrics reads from the database at scrape time, and the readiness ping.

Each is one indexed query whose cost follows the size of its answer (open incidents,
waiting jobs, muted alerts), not the size of the tables: a scrape stays cheap with
hundreds of thousands of stored alerts. Every replica reads the same rows, so every
replica reports the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from incidents.db import aggregate_time, session_scope
from incidents.models import (
    INHIBITED_SQL,
    SILENCED_SQL,
    Alert,
    AlertState,
    Incident,
    IncidentTotal,
    PipelineJob,
)
from incidents.pipeline.totals import COUNTED_EVENTS
from incidents.vocab import AlertStatus, IncidentStatus


@dataclass
class Figures:
    """What the database says at one moment, for the gauges and counters of /metrics."""

    # Per severity: how many incidents are open, and when the oldest of them opened.
    open_incidents: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    # Creation time of the oldest job not yet done, if any waits.
    oldest_job: datetime | None = None
    # Firing alerts that page no one, by reason (silenced, inhibited, ignored).
    muted: dict[str, int] = field(default_factory=dict)
    # Incident events ever counted: opened, reopened, resolved.
    totals: dict[str, int] = field(default_factory=dict)


def metric_queries(dialect: str) -> dict[str, Any]:
    """The statements behind the figures, by name (EXPLAIN-able in tests)."""
    oldest = [
        select(func.min(col(PipelineJob.created_at)))
        .where(col(PipelineJob.status) == status)
        .scalar_subquery()
        for status in ("pending", "running")
    ]
    return {
        "open_incidents": select(
            col(Incident.severity), func.count(), func.min(col(Incident.opened_at))
        )
        .where(col(Incident.status) == IncidentStatus.OPEN)
        .group_by(col(Incident.severity)),
        "oldest_job": select(*oldest),
        "silenced": _muted_query(SILENCED_SQL[dialect]),
        "inhibited": _muted_query(INHIBITED_SQL[dialect]),
        "ignored": select(func.count())
        .select_from(Alert)
        .where(col(Alert.ignored_by).is_not(None))
        .where(col(Alert.status) == AlertStatus.FIRING),
        "totals": select(col(IncidentTotal.event), col(IncidentTotal.count)),
    }


def _muted_query(predicate: str) -> Any:
    return (
        select(func.count())
        .select_from(AlertState)
        .join(Alert, col(Alert.fingerprint) == col(AlertState.fingerprint))
        .where(text(predicate))
        .where(col(Alert.status) == AlertStatus.FIRING)
    )


def ping(engine: Engine) -> None:
    """One round trip to the database, for the readiness check."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def read_figures(factory: sessionmaker[Session]) -> Figures:
    """Read every figure in one short transaction."""
    out = Figures()
    with session_scope(factory) as session:
        dialect = session.get_bind().dialect.name
        queries = metric_queries(dialect)
        for severity, count, first in session.execute(queries["open_incidents"]):
            out.open_incidents[str(severity)] = (int(count), aggregate_time(first))
        starts = [v for v in session.execute(queries["oldest_job"]).one() if v is not None]
        out.oldest_job = min(aggregate_time(v) for v in starts) if starts else None
        for reason in ("silenced", "inhibited", "ignored"):
            out.muted[reason] = int(session.scalar(queries[reason]) or 0)
        out.totals = dict.fromkeys(COUNTED_EVENTS, 0)
        out.totals.update({str(e): int(c) for e, c in session.execute(queries["totals"])})
    return out
