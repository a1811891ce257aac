"""Periodic upkeep the pipeline cannot do at ingest time.

- An alert muted by a silence that has since expired (or by an inhibiting alert that has
  since resolved) still fires: it goes back through the pipeline, as Alertmanager would
  un-mute it, instead of waiting for the sender's next repeat.
- A flapping incident is not closed by each resolve; once its alerts have stayed
  resolved for a flap window it is closed here.
- A firing alert not sent again for the stale time gets one `alert_stale` entry on its
  incident's timeline (see `incidents.pipeline.stale`).
- A heartbeat that was not pinged in time gets its `HeartbeatMissing` alert, stored
  through the ingest path (see `incidents.heartbeats`). This runs first, and on its own
  transaction, so a failure of the other checks cannot hold it back.

No check locks the whole graph. Closing quiet incidents (flapping ones, ended quiet
periods) picks a bounded batch without a lock, then locks only the partitions those
incidents stand on, as a pipeline job does, and closes them in a fixed number of
statements (see `settling`). Stale alerts get their timeline entries under a lock of
their own (see `stale`). The muted-alert check reads without a lock, in bounded
batches that rotate through the muted alerts from one upkeep to the next: it only queues
a pipeline job, which re-checks under the lock.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.db import session_scope, utcnow
from incidents.heartbeats import clock
from incidents.heartbeats.monitor import expire_due
from incidents.models import ALERTS, JOBS, STATES, Alert
from incidents.pipeline import settling, stale
from incidents.pipeline.mute import Inhibitor, active_silences, match_labels
from incidents.pipeline.runner import route_events
from incidents.vocab import AlertStatus, JobStatus

log = logging.getLogger(__name__)

# Muted alerts re-checked per upkeep; the next upkeep goes on after the last one.
BATCH = 2000
_cursor: dict[str, str] = {}


def unmuted_alerts(session: Session, settings: Settings) -> list[str]:
    """Firing alerts recorded as muted that no silence or inhibition covers any more:
    one batch, after where the previous call stopped (then from the start again)."""
    now = utcnow()
    key = str(session.get_bind().engine.url)
    after = _cursor.get(key, "")
    batch = _muted_batch(session, after)
    if not batch and after:
        batch = _muted_batch(session, "")
    _cursor[key] = batch[-1].fingerprint if len(batch) == BATCH else ""
    silences = active_silences(session, now)
    inhibitor = Inhibitor(settings.correlation.inhibit_rules)
    cache: dict[tuple[Any, ...], list[tuple[str, dict[str, str]]]] = {}
    inhibitor.warm(session, [match_labels(a) for a in batch], cache)
    free: list[str] = []
    for alert in batch:
        labels = match_labels(alert)
        if any(s.covers(alert, labels) for s in silences):
            continue
        if inhibitor.inhibitors(session, alert, labels, cache):
            continue
        free.append(alert.fingerprint)
    return free


def _muted_batch(session: Session, after: str) -> list[Alert]:
    sqlite = session.get_bind().dialect.name == "sqlite"
    length = func.json_array_length if sqlite else func.jsonb_array_length
    return list(
        session.scalars(
            select(Alert)
            .join(STATES, STATES.c.fingerprint == ALERTS.c.fingerprint)
            .where(ALERTS.c.status == AlertStatus.FIRING)
            .where(
                (func.coalesce(length(STATES.c.silenced_by), 0) > 0)
                | (func.coalesce(length(STATES.c.inhibited_by), 0) > 0)
            )
            .where(ALERTS.c.fingerprint > after)
            .order_by(ALERTS.c.fingerprint)
            .limit(BATCH)
        )
    )


def maintain(
    factory: sessionmaker[Session], settings: Settings, now: datetime | None = None
) -> list[int]:
    """Run the upkeep (as of `now`, for tests; the clock otherwise); return the ids of new
    pipeline jobs to dispatch."""
    jobs: list[int] = []
    try:
        jobs.extend(expire_due(factory, settings, clock.now()))
    except Exception:
        log.exception("heartbeat check failed")
    if not settings.correlation.enabled:
        return jobs
    with session_scope(factory) as session:
        now = now or utcnow()
        settled = settling.settle(session, settings.correlation, now)
        # Their resolves notify like any other; the notify sweep sends them.
        route_events(session, settings, settled, now)
    with session_scope(factory) as session:
        # Under a lock of its own, so two upkeeps never write one staleness twice.
        marked = stale.mark(session, settings.correlation.stale_after_seconds, now)
    if settled:
        log.info("resolved %d incident(s) that stayed quiet", len(settled))
    if marked:
        log.info("%d alert(s) went stale; their incidents' timelines say so", marked)
    with session_scope(factory) as session:
        free = unmuted_alerts(session, settings)
        if free:
            job_id = session.execute(
                insert(JOBS)
                .values(
                    created_at=utcnow(), fingerprints=free, status=JobStatus.PENDING, attempts=0
                )
                .returning(JOBS.c.id)
            ).scalar_one()
            jobs.append(int(job_id))
            log.info("%d alert(s) no longer muted; sent back through the pipeline", len(free))
    return jobs
