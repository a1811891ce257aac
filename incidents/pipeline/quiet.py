"""The quiet period: an incident whose alerts all resolved waits in `monitoring` before it
resolves by itself, so an alert that fires again a few minutes later takes the same
incident back instead of opening (and paging) a new one.

- `start`, in a job: every member resolved; the incident enters `monitoring` until
  `quiet_until`, and the timeline says when it will resolve.
- `interrupt`, in a job: a member fired again (or a new alert joined) during the period;
  the incident goes back to where people had it (`acknowledged` if someone had, else
  `triggered`), and the timeline says so. It pages no one again: it was paged already.
  Back to `triggered`, nobody having acknowledged, its escalation carries on where it
  stopped: the next level is due when it was due before the quiet period, or at once if
  that time went by meanwhile.
- `due` and `taken_back`, in the upkeep: periods that ended quietly resolve their
  incidents (see `settling`), and that resolve pages like any other (people are told it
  is over).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from incidents.models import INCIDENTS, LINKS, Incident
from incidents.notify import outbox
from incidents.pipeline import lifecycle
from incidents.pipeline.incident_state import Job, note
from incidents.vocab import IncidentState, IncidentStatus, MemberStatus, TimelineKind

# Incidents settled per upkeep at most: the rest wait for the next one.
SETTLE_BATCH = 500


def start(job: Job, incident: Incident) -> None:
    """All its alerts resolved: monitor it for the quiet period."""
    if incident.quiet_until is not None:
        return
    incident_id = int(incident.id or 0)
    before = incident.state
    incident.state = IncidentState.MONITORING.value
    incident.state_changed_at = job.now
    incident.quiet_until = job.now + job.quiet
    if incident.escalation and incident.escalation_due_at is not None:
        # Kept for `interrupt`: the ladder stops while all is quiet, not for good.
        due = incident.escalation_due_at.isoformat()
        incident.escalation = {**incident.escalation, "paused_due": due}
    incident.escalation_due_at = None
    outbox.cancel_scheduled(
        job.session, incident_id, lifecycle.ESCALATION_KEYS, "all alerts resolved", job.now
    )
    minutes = job.quiet.total_seconds() / 60
    note(
        job,
        incident_id,
        TimelineKind.STATUS_CHANGED,
        f"all alerts resolved: monitoring; resolves by itself at "
        f"{incident.quiet_until:%H:%M} UTC unless an alert fires again within "
        f"{minutes:g} minutes",
        data={"from": before, "to": IncidentState.MONITORING.value, "auto": True, "by": "system"},
    )


def interrupt(job: Job, incident_ids: set[int]) -> None:
    """An alert fired during the quiet period: take the incident back."""
    for incident_id in sorted(incident_ids):
        incident = job.incident(incident_id)
        if incident.status != IncidentStatus.OPEN or incident.quiet_until is None:
            continue
        firing, _ = lifecycle.firing_members(job.session, incident_id)
        if not firing:
            continue
        back = (
            IncidentState.ACKNOWLEDGED
            if incident.acknowledged_at is not None
            else IncidentState.TRIGGERED
        )
        incident.state = back.value
        incident.state_changed_at = job.now
        incident.quiet_until = None
        said = f"an alert fired again during the quiet period: {back.value} again"
        if back is IncidentState.TRIGGERED:
            said += resume_escalation(incident, job.now)
        note(
            job,
            incident_id,
            TimelineKind.REOPENED,
            said,
            data={"to": back.value, "quiet_period": True},
        )


def resume_escalation(incident: Incident, now: datetime) -> str:
    """Set the next deadline of an unacknowledged incident's stopped ladder, if it has
    levels left; what the timeline adds."""
    state = dict(incident.escalation or {})
    if not state.get("policy") or state.get("done"):
        return ""
    paused = state.pop("paused_due", None)
    due = max(now, datetime.fromisoformat(paused)) if paused else now
    incident.escalation = state
    incident.escalation_due_at = due
    return f"; escalation resumes, its next level due at {due:%H:%M:%S} UTC"


def due(session: Session, now: datetime, *, among: Collection[int] | None = None) -> list[int]:
    """Open incidents whose quiet period has ended (one batch, longest ended first); the
    upkeep resolves them (see `settling`)."""
    if among is not None and not among:
        return []
    pick = (
        select(INCIDENTS.c.id)
        .where(INCIDENTS.c.quiet_until <= now)
        .where(INCIDENTS.c.status == IncidentStatus.OPEN)
        .order_by(INCIDENTS.c.quiet_until, INCIDENTS.c.id)
        .limit(SETTLE_BATCH)
    )
    if among is not None:
        pick = pick.where(INCIDENTS.c.id.in_(sorted(among)))
    return [int(i) for i in session.scalars(pick)]


def taken_back(session: Session, incident_ids: list[int]) -> set[int]:
    """Of these ended periods, the incidents with a member firing again: a job took them
    back and has not finished yet, so they stay open (left to that job); one statement."""
    if not incident_ids:
        return set()
    firing = set(
        session.scalars(
            select(LINKS.c.incident_id)
            .where(LINKS.c.incident_id.in_(incident_ids))
            .where(LINKS.c.status == MemberStatus.FIRING)
            .distinct()
        )
    )
    if firing:
        session.execute(
            update(INCIDENTS).where(INCIDENTS.c.id.in_(sorted(firing))).values(quiet_until=None)
        )
    return {int(i) for i in firing}
