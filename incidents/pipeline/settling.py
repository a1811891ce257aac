"""The upkeep's closing of incidents that went quiet, in bounded batches.

Two kinds of open incident close in the upkeep rather than in a job: a flapping one whose
alerts have all stayed resolved for a flap window, and one whose quiet period ended with
no alert firing (see `quiet`). Both are closed here the same way:

1. pick the candidates with one query each, without any lock, at most a batch;
2. lock only the graph partitions their members stand on (the graph lock shared, the
   slots in their global order, as a pipeline job does), so jobs elsewhere in the graph
   go on correlating meanwhile;
3. re-check the candidates under those locks (a job may have changed them in between);
4. close them with a fixed number of statements, whatever the batch holds.

The rest wait for the next upkeep.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, literal, select, update
from sqlalchemy.orm import Session

from incidents import timeline
from incidents.config import CorrelationSettings
from incidents.correlation.store import current_graph
from incidents.locks import MAX_SLOTS_PER_JOB, lock_partitions, slot_of
from incidents.models import ALERTS, BY_SERVICE, INCIDENTS, LINKS, STATES
from incidents.notify.models import NOTIFICATIONS
from incidents.pipeline import quiet
from incidents.pipeline.lifecycle import ESCALATION_KEYS
from incidents.pipeline.stages import IncidentEvent
from incidents.vocab import IncidentState, IncidentStatus, MemberStatus, TimelineKind

# Flapping incidents settled per upkeep at most.
FLAP_BATCH = 200

FLAP_REASON = "all alerts resolved and quiet"
QUIET_REASON = "all alerts resolved and none fired again during the quiet period"


def settle(session: Session, settings: CorrelationSettings, now: datetime) -> list[IncidentEvent]:
    """Close the quiet flapping incidents and the ended quiet periods (one batch of each);
    return the resolves, which page like any other (people are told it is over)."""
    flapping = quiet_flapping(session, settings, now)
    due = quiet.due(session, now)
    locked = set(lock_incidents(session, sorted(set(flapping) | set(due))))
    # Re-checked under the lock: a job may have changed them since they were picked.
    flapping = quiet_flapping(session, settings, now, among=[i for i in flapping if i in locked])
    due = quiet.due(session, now, among=[i for i in due if i in locked])
    closing = set(flapping)
    taken_back = quiet.taken_back(session, [i for i in due if i not in closing])
    quiet_closing = [i for i in due if i not in closing and i not in taken_back]
    if flapping:
        _end_flapping(session, flapping)
    events = close_all(session, flapping, now, FLAP_REASON)
    events += close_all(session, quiet_closing, now, QUIET_REASON)
    return events


def quiet_flapping(
    session: Session,
    settings: CorrelationSettings,
    now: datetime,
    *,
    among: Collection[int] | None = None,
) -> list[int]:
    """Open flapping incidents with no member firing and no member's alert changing state
    for a flap window: one query, at most a batch, oldest first."""
    if among is not None and not among:
        return []
    quiet_since = now - timedelta(seconds=settings.flap_window_seconds)
    firing = exists().where(
        LINKS.c.incident_id == INCIDENTS.c.id, LINKS.c.status == MemberStatus.FIRING
    )
    recent = exists(
        select(LINKS.c.id)
        .join(STATES, STATES.c.fingerprint == LINKS.c.fingerprint)
        .where(LINKS.c.incident_id == INCIDENTS.c.id)
        .where(STATES.c.last_state_at > quiet_since)
    )
    pick = (
        select(INCIDENTS.c.id)
        .where(INCIDENTS.c.status == IncidentStatus.OPEN)
        .where(INCIDENTS.c.flapping)
        .where(~firing)
        .where(~recent)
        .order_by(INCIDENTS.c.id)
        .limit(FLAP_BATCH)
    )
    if among is not None:
        pick = pick.where(INCIDENTS.c.id.in_(sorted(among)))
    return [int(i) for i in session.scalars(pick)]


def lock_incidents(session: Session, incident_ids: list[int]) -> list[int]:
    """Lock the partitions of these incidents' members (in one global order, the graph
    lock shared); return the incidents now covered: the first ones whose partitions fit in
    one job's slots, or none when the graph was replaced meanwhile."""
    if not incident_ids or session.get_bind().dialect.name != "postgresql":
        return incident_ids
    graph = current_graph(session)
    partitions: dict[int, set[str]] = defaultdict(set)
    for incident_id, service in session.execute(
        select(LINKS.c.incident_id, LINKS.c.service)
        .where(LINKS.c.incident_id.in_(incident_ids))
        .distinct()
    ):
        partitions[int(incident_id)].add(graph.partition_of(service))
    chosen: list[int] = []
    wanted: set[str] = set()
    for incident_id in incident_ids:
        more = wanted | partitions[incident_id]
        if chosen and len({slot_of(p) for p in more}) > MAX_SLOTS_PER_JOB:
            break  # the next upkeep takes the rest, rather than locking the whole graph
        chosen.append(incident_id)
        wanted = more
    lock_partitions(session, wanted)
    if current_graph(session).digest != graph.digest:
        return []  # its partitions may have moved: leave them to the next upkeep
    return chosen


def _end_flapping(session: Session, incident_ids: list[int]) -> None:
    """Their alerts are no longer flapping: a new incident for them pages again."""
    session.execute(
        update(STATES)
        .where(
            STATES.c.fingerprint.in_(
                select(LINKS.c.fingerprint).where(LINKS.c.incident_id.in_(incident_ids))
            )
        )
        .values(flapping=False)
    )


def close_all(
    session: Session, incident_ids: list[int], now: datetime, why: str
) -> list[IncidentEvent]:
    """Resolve these incidents as `lifecycle.close` resolves one, in one statement per
    table: each resolved as of the latest end among its alerts (else now)."""
    if not incident_ids:
        return []
    ended = (
        select(func.max(ALERTS.c.ends_at))
        .select_from(LINKS)
        .join(ALERTS, ALERTS.c.fingerprint == LINKS.c.fingerprint)
        .where(LINKS.c.incident_id == INCIDENTS.c.id)
        .scalar_subquery()
    )
    values: dict[str, Any] = {
        "status": IncidentStatus.RESOLVED.value,
        "state": IncidentState.RESOLVED.value,
        "state_changed_at": now,
        "escalation_due_at": None,
        "quiet_until": None,
        "resolved_at": func.coalesce(ended, literal(now, INCIDENTS.c.resolved_at.type)),
        "updated_at": now,
    }
    severities = {
        int(incident_id): str(severity)
        for incident_id, severity in session.execute(
            update(INCIDENTS)
            .where(INCIDENTS.c.id.in_(incident_ids))
            .values(**values)
            .returning(INCIDENTS.c.id, INCIDENTS.c.severity)
        )
    }
    n = NOTIFICATIONS.c
    session.execute(
        update(NOTIFICATIONS)
        .where(n.incident_id.in_(incident_ids))
        .where(n.event_key.like(f"{ESCALATION_KEYS}%"))
        .where(n.status == "pending")
        .values(status="cancelled", error="resolved", updated_at=now)
    )
    session.execute(
        update(BY_SERVICE).where(BY_SERVICE.c.incident_id.in_(incident_ids)).values(open=False)
    )
    entry_ids = timeline.write(
        session,
        [
            timeline.entry(incident_id, TimelineKind.RESOLVED, why, at=now, pages=True)
            for incident_id in incident_ids
        ],
    )
    return [
        IncidentEvent(
            incident_id,
            TimelineKind.RESOLVED,
            severities[incident_id],
            pages=True,
            entry_id=entry_id,
        )
        for incident_id, entry_id in zip(incident_ids, entry_ids, strict=True)
    ]
