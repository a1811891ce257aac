"""Reminders: a route's `repeat_interval`, for incidents nobody has acknowledged.

Alertmanager sends a firing group again every `repeat_interval`. Here the unit is the
incident: while it is open and triggered (not acknowledged, not resolved), each receiver
whose matched route sets `repeat_interval` is sent a `reminder` on every one of its
channels once per interval after the incident last paged (`paged_at`). The reminder
for the n-th interval has the event key `repeat:<paged_at>:<n>`, so the outbox's unique
key makes it once only however many sweeps (or workers) see it due; a new page (severity
raised, reopened) starts the count again.

Receivers with an `escalation_policy` get no reminders: their policy already pages
again until someone acknowledges (its levels and `repeat`), and two re-paging schemes
for one page would only double the noise. Digest receivers get none either.

Acknowledging or resolving stops the reminders; one still waiting is cancelled. The
sweep runs beside the escalation sweep (the embedded worker, or beat's escalation task),
but at most every SWEEP_EVERY_SECONDS (a quarter of the shortest interval when that is
less): it reads every open, unacknowledged incident paged longer ago than the shortest
interval, and a reminder due every few hours need not be looked for every few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents.correlation.store import current_graph
from incidents.db import session_scope, utcnow
from incidents.models import INCIDENTS
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.routing import RoutingTree, graph_team_lookup
from incidents.notify.stage import incident_labels, insert_rows, wake_ups
from incidents.pipeline.stages import RunContext, TaskRef
from incidents.vocab import IncidentState, IncidentStatus

KEY_PREFIX = "repeat:"
EVENT = "reminder"
# Incidents whose labels are read at once.
CHUNK = 500
# The longest time between two reminder sweeps.
SWEEP_EVERY_SECONDS = 30.0


class SweepPace:
    """When a process's next reminder sweep is due (each sweeping process keeps one)."""

    def __init__(self) -> None:
        self._next = 0.0

    def due(self, tree: RoutingTree) -> bool:
        """True (and the next one set) when a sweep is due now; False when no route
        reminds, or the last sweep was too recent."""
        shortest = tree.shortest_repeat()
        if shortest is None:
            return False
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + min(SWEEP_EVERY_SECONDS, shortest.total_seconds() / 4)
        return True


def remind(session: Session, tree: RoutingTree, now: datetime) -> list[dict[str, Any]]:
    """The reminder rows due now that are not in the outbox yet (the caller inserts)."""
    shortest = tree.shortest_repeat()
    if shortest is None:
        return []
    i = INCIDENTS.c
    due: list[tuple[int, datetime]] = list(
        session.execute(
            select(i.id, i.paged_at)
            .where(i.status == IncidentStatus.OPEN, i.state == IncidentState.TRIGGERED)
            .where(i.paged_at.is_not(None), i.paged_at <= now - shortest)
            .order_by(i.id)
        ).tuples()
    )
    rows: list[dict[str, Any]] = []
    for start in range(0, len(due), CHUNK):
        rows += _remind_chunk(session, tree, now, due[start : start + CHUNK])
    return rows


def _remind_chunk(
    session: Session, tree: RoutingTree, now: datetime, due: Sequence[tuple[int, datetime]]
) -> list[dict[str, Any]]:
    ids = [incident_id for incident_id, _ in due]
    labels = incident_labels(session, ids, graph_team_lookup(current_graph(session)))
    n = NOTIFICATIONS.c
    present = set(
        session.execute(
            select(n.incident_id, n.event_key, n.channel, n.target)
            .where(n.incident_id.in_(ids))
            .where(n.event_key.like(f"{KEY_PREFIX}%"))
        ).tuples()
    )
    rows: list[dict[str, Any]] = []
    for incident_id, paged_at in due:
        if incident_id not in labels:
            continue
        for receiver, options in tree.routed(labels[incident_id]):
            interval = options.repeat_interval
            if interval is None or receiver.digest or receiver.escalation_policy:
                continue
            count = (now - paged_at) // interval
            if count < 1:
                continue
            key = f"{KEY_PREFIX}{int(paged_at.timestamp())}:{count}"
            waited = _words(now - paged_at)
            for channel, targets in receiver.targets.items():
                for target in targets:
                    if (incident_id, key, channel, target) in present:
                        continue
                    present.add((incident_id, key, channel, target))
                    rows.append(
                        {
                            "incident_id": incident_id,
                            "event_key": key,
                            "event": EVENT,
                            "receiver": receiver.name,
                            "channel": channel,
                            "target": target,
                            "status": "pending",
                            "attempts": 0,
                            "not_before": now,
                            "created_at": now,
                            "updated_at": now,
                            "details": [f"paged {waited} ago and not acknowledged yet"],
                        }
                    )
    return rows


def cancel_answered(session: Session, now: datetime) -> int:
    """Cancel reminders still waiting for incidents someone acknowledged or closed."""
    i, n = INCIDENTS.c, NOTIFICATIONS.c
    answered = select(i.id).where(
        or_(i.status != IncidentStatus.OPEN, i.state != IncidentState.TRIGGERED)
    )
    changed = session.execute(
        update(NOTIFICATIONS)
        .where(n.event_key.like(f"{KEY_PREFIX}%"), n.status == "pending")
        .where(n.incident_id.in_(answered))
        .values(status="cancelled", error="acknowledged or closed", updated_at=now)
    )
    return int(getattr(changed, "rowcount", 0) or 0)


def run_reminders(
    factory: sessionmaker[Session], tree: RoutingTree, now: datetime | None = None
) -> list[TaskRef]:
    """One reminder sweep in its own transaction; the channels to wake after it."""
    if tree.shortest_repeat() is None:
        return []
    with session_scope(factory) as session:
        at = now or utcnow()
        cancel_answered(session, at)
        rows = remind(session, tree, at)
        if not rows:
            return []
        insert_rows(session, rows)
        return wake_ups(RunContext(session=session, now=at, fingerprints=[]), rows)


def _words(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
