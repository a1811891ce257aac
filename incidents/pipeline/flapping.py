"""Flap detection: an alert that changes state too often stops paging until it settles."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from incidents.config import CorrelationSettings
from incidents.models import ALERTS, INCIDENTS, LINKS, Alert, AlertState, Incident, IncidentAlert
from incidents.pipeline import lifecycle
from incidents.pipeline.incident_state import Job, State, alert_name, note
from incidents.pipeline.stages import IncidentEvent
from incidents.vocab import IncidentStatus, MemberStatus, TimelineKind

# State changes remembered per alert: more than any flap threshold needs.
KEPT_TRANSITIONS = 50


def record_transition(job: Job, settings: CorrelationSettings, state: State, alert: Alert) -> None:
    """Count a state change; mark the alert (and once, its incident) as flapping."""
    window_start = alert.state_at - timedelta(seconds=settings.flap_window_seconds)
    recent = [t for t in state.transitions if datetime.fromisoformat(t) >= window_start]
    recent.append(alert.state_at.isoformat())
    state.transitions = recent[-KEPT_TRANSITIONS:]
    flapping = len(recent) > settings.flap_changes
    if flapping and not state.flapping:
        state.flapping = True
        link = job.latest_links.get(alert.fingerprint)
        if link is None:
            return
        incident = job.incident(link.incident_id)
        if incident.flapping:
            return
        incident.flapping = True
        note(
            job,
            link.incident_id,
            TimelineKind.FLAPPING,
            f"alert {alert_name(alert)} is flapping: {len(recent)} state changes within "
            f"{int(settings.flap_window_seconds // 60)} minutes; its further changes will not page",
            data={"fingerprint": alert.fingerprint, "changes": len(recent)},
        )
    elif not flapping and state.flapping:
        state.flapping = False


def settle_flapping(
    session: Session, settings: CorrelationSettings, now: datetime
) -> list[IncidentEvent]:
    """Resolve flapping incidents whose alerts have all stayed resolved for a flap window;
    return the resolves, which page like any other (people are told it is over)."""
    quiet_since = now - timedelta(seconds=settings.flap_window_seconds)
    settled: list[IncidentEvent] = []
    candidates = session.scalars(
        select(Incident)
        .where(INCIDENTS.c.status == IncidentStatus.OPEN)
        .where(INCIDENTS.c.flapping)
    ).all()
    for incident in candidates:
        if incident.id is None:
            continue
        links = session.scalars(
            select(IncidentAlert).where(LINKS.c.incident_id == incident.id)
        ).all()
        if any(link.status == MemberStatus.FIRING for link in links):
            continue
        states = [session.get(AlertState, link.fingerprint) for link in links]
        if any(s is not None and s.last_state_at > quiet_since for s in states):
            continue
        for state in states:
            if state is not None:
                state.flapping = False
        ended = session.scalar(
            select(func.max(ALERTS.c.ends_at)).where(
                ALERTS.c.fingerprint.in_([link.fingerprint for link in links])
            )
        )
        entry_id = lifecycle.close(
            session, incident, ended or now, now, "all alerts resolved and quiet"
        )
        settled.append(
            IncidentEvent(
                incident.id, TimelineKind.RESOLVED, incident.severity, pages=True, entry_id=entry_id
            )
        )
    return settled
