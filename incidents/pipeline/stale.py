"""Stale alerts on the incident's timeline.

Alertmanager re-sends a firing alert every `repeat_interval`; one not sent again for
`correlation.stale_after_seconds` may have lost its resolve, or its sender may be gone.
GET /incidents/{id} flags such an alert (`stale`); the upkeep also writes one
`alert_stale` entry on its open incident when it becomes stale, so the incident says so
where people read it. The entry names the alert and the `last_received` it went stale
with: the same staleness is written once, and an alert that is sent again and then goes
stale again gets a new entry.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents import timeline
from incidents.locks import try_lock_stale
from incidents.models import ALERTS, INCIDENTS, LINKS, TIMELINE
from incidents.vocab import IncidentStatus, MemberStatus, TimelineKind

# Stale alerts looked at per upkeep, the most recently stale first (those not yet said).
BATCH = 500


def mark(session: Session, stale_after_seconds: float, now: datetime) -> int:
    """Write an `alert_stale` entry for each firing alert of an open incident that went
    stale and has none yet for this staleness; return how many were written."""
    if not stale_after_seconds or not try_lock_stale(session):
        return 0  # off, or another upkeep is writing them: two never write one twice
    before = now - timedelta(seconds=stale_after_seconds)
    found = session.execute(
        select(
            LINKS.c.incident_id,
            LINKS.c.fingerprint,
            LINKS.c.service,
            ALERTS.c.labels,
            ALERTS.c.last_received,
        )
        .join(ALERTS, ALERTS.c.fingerprint == LINKS.c.fingerprint)
        .join(INCIDENTS, INCIDENTS.c.id == LINKS.c.incident_id)
        .where(LINKS.c.status == MemberStatus.FIRING)
        .where(ALERTS.c.last_received < before)
        .where(INCIDENTS.c.status == IncidentStatus.OPEN)
        .order_by(ALERTS.c.last_received.desc(), LINKS.c.id)
        .limit(BATCH)
    ).all()
    if not found:
        return 0
    said: set[tuple[int, str, str]] = set()
    for incident_id, data in session.execute(
        select(TIMELINE.c.incident_id, TIMELINE.c.data)
        .where(TIMELINE.c.kind == TimelineKind.ALERT_STALE)
        .where(TIMELINE.c.incident_id.in_(sorted({row.incident_id for row in found})))
    ):
        said.add((int(incident_id), str(data.get("fingerprint")), str(data.get("last_received"))))
    entries: list[dict[str, Any]] = []
    for row in found:
        last = row.last_received.isoformat()
        if (int(row.incident_id), row.fingerprint, last) in said:
            continue
        said.add((int(row.incident_id), row.fingerprint, last))
        name = (row.labels or {}).get("alertname", row.fingerprint)
        hours = (now - row.last_received).total_seconds() / 3600
        entries.append(
            timeline.entry(
                int(row.incident_id),
                TimelineKind.ALERT_STALE,
                f"alert {name} ({row.service}) is still firing but was not sent again for "
                f"{hours:.1f} h (since {row.last_received:%Y-%m-%d %H:%M} UTC): stale; its "
                "sender may have stopped, or lost its resolve",
                at=now,
                data={"fingerprint": row.fingerprint, "alertname": name, "last_received": last},
            )
        )
    timeline.write(session, entries)
    return len(entries)
