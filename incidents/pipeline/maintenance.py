"""Periodic upkeep the pipeline cannot do at ingest time.

- An alert muted by a silence that has since expired (or by an inhibiting alert that has
  since resolved) still fires: it goes back through the pipeline, as Alertmanager would
  un-mute it, instead of waiting for the sender's next repeat.
- A flapping incident is not closed by each resolve; once its alerts have stayed
  resolved for a flap window it is closed here.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.db import session_scope, utcnow
from incidents.models import ALERTS, JOBS, STATES, Alert
from incidents.pipeline.incidents import IncidentStage, lock_correlation
from incidents.pipeline.mute import Inhibitor, active_silences, match_labels

log = logging.getLogger(__name__)

MAX_REEVALUATED = 5000


def unmuted_alerts(session: Session, settings: Settings) -> list[str]:
    """Firing alerts recorded as muted that no silence or inhibition covers any more."""
    now = utcnow()
    rows = session.execute(
        select(Alert)
        .join(STATES, STATES.c.fingerprint == ALERTS.c.fingerprint)
        .where(ALERTS.c.status == "firing")
        .where(
            (func.coalesce(func.json_array_length(STATES.c.silenced_by), 0) > 0)
            | (func.coalesce(func.json_array_length(STATES.c.inhibited_by), 0) > 0)
            if session.get_bind().dialect.name == "sqlite"
            else (
                (func.jsonb_array_length(STATES.c.silenced_by) > 0)
                | (func.jsonb_array_length(STATES.c.inhibited_by) > 0)
            )
        )
        .order_by(ALERTS.c.starts_at)
        .limit(MAX_REEVALUATED)
    ).scalars()
    silences = active_silences(session, now)
    inhibitor = Inhibitor(settings.correlation.inhibit_rules)
    free: list[str] = []
    for alert in rows:
        labels = match_labels(alert)
        if any(s.covers(alert, labels) for s in silences):
            continue
        if inhibitor.inhibitors(session, alert, labels):
            continue
        free.append(alert.fingerprint)
    return free


def maintain(factory: sessionmaker[Session], settings: Settings) -> list[int]:
    """Run the upkeep; return the ids of new pipeline jobs to dispatch."""
    if not settings.correlation.enabled:
        return []
    jobs: list[int] = []
    with session_scope(factory) as session:
        lock_correlation(session)
        settled = IncidentStage(settings).settle_flapping(session, utcnow())
        if settled:
            log.info("closed %d flapping incident(s) that stayed quiet", len(settled))
        free = unmuted_alerts(session, settings)
        if free:
            job_id = session.execute(
                insert(JOBS)
                .values(created_at=utcnow(), fingerprints=free, status="pending", attempts=0)
                .returning(JOBS.c.id)
            ).scalar_one()
            jobs.append(int(job_id))
            log.info("%d alert(s) no longer muted; sent back through the pipeline", len(free))
    return jobs
