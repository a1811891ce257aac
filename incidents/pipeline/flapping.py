"""Flap detection: an alert that changes state too often stops paging until it settles.

A flapping incident is closed by the upkeep once its alerts have stayed resolved for a
flap window (see `settling`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from incidents.config import CorrelationSettings
from incidents.models import Alert
from incidents.pipeline.incident_state import Job, State, alert_name, note
from incidents.vocab import TimelineKind

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
