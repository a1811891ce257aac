"""What people do to an incident: acknowledge, resolve, reopen, set a status, note, assign,
change the severity. The API, Slack buttons, SMS replies and key presses all come here.

Each action checks the incident's state and raises `Conflict` naming it when the
transition is not allowed, writes one timeline entry saying who did it and why, and
returns the incident events it caused; the caller hands them to the routing stage in the
same transaction (`runner.route_events`), so every state change reaches the incident's
channels. Acknowledging and resolving stop the incident's escalation.

Resolving and reopening change which incidents take new alerts, so they hold the
correlation lock, as the pipeline's jobs do; the others lock the incident's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents import timeline
from incidents.exceptions import Conflict, NotFound, ValidationFailed
from incidents.models import INCIDENTS, Incident
from incidents.notify import outbox
from incidents.pipeline import lifecycle
from incidents.pipeline.incident_state import lock_correlation
from incidents.pipeline.lifecycle import ESCALATION_KEYS
from incidents.pipeline.stages import IncidentEvent
from incidents.vocab import IncidentState, IncidentStatus, TimelineKind, severity_rank

# The states a person may set with `status`, and the states they may come from.
WORKING = (IncidentState.INVESTIGATING, IncidentState.IDENTIFIED, IncidentState.MONITORING)
ACTIVE = (IncidentState.TRIGGERED, IncidentState.ACKNOWLEDGED, *WORKING)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, and from where (api, slack, sms, voice)."""

    name: str
    via: str = "api"

    def __str__(self) -> str:
        return self.name if self.via == "api" else f"{self.name} (via {self.via})"


def load(session: Session, incident_id: int, *, correlation: bool = False) -> Incident:
    """The incident, locked for an action; NotFound if there is none."""
    if correlation:
        lock_correlation(session)
    pick = select(Incident).where(INCIDENTS.c.id == incident_id)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update()
    incident = session.scalars(pick).first()
    if incident is None:
        raise NotFound(f"no incident {incident_id}", field="incident_id")
    if incident.status == IncidentStatus.MERGED:
        raise Conflict(
            f"incident {incident_id} was merged into incident {incident.merged_into}; "
            "act on that one",
            field="incident_id",
        )
    return incident


def _refuse(incident: Incident, action: str) -> Conflict:
    return Conflict(
        f"cannot {action} incident {incident.id}: it is {incident.state}", field="state"
    )


def _record(
    session: Session,
    incident: Incident,
    kind: TimelineKind,
    text: str,
    *,
    actor: Actor,
    message: str | None,
    now: datetime,
    pages: bool = False,
    data: dict[str, Any] | None = None,
) -> IncidentEvent:
    incident_id = int(incident.id or 0)
    said = f"{text}: {message}" if message else text
    details = {"by": actor.name, "via": actor.via, **(data or {})}
    if message:
        details["message"] = message
    [entry_id] = timeline.write(
        session,
        [
            timeline.entry(
                incident_id, kind, said, at=now, pages=pages, data=details, actor=actor.name
            )
        ],
    )
    incident.updated_at = now
    return IncidentEvent(
        incident_id, kind, incident.severity, pages=pages, data=details, entry_id=entry_id
    )


def _set_state(incident: Incident, state: IncidentState, now: datetime) -> None:
    incident.state = state.value
    incident.state_changed_at = now


def _stop_escalation(session: Session, incident: Incident, why: str, now: datetime) -> None:
    incident.escalation_due_at = None
    outbox.cancel_scheduled(session, int(incident.id or 0), ESCALATION_KEYS, why, now)


def acknowledge(
    session: Session, incident_id: int, actor: Actor, message: str | None, now: datetime
) -> list[IncidentEvent]:
    """Someone has it: stop escalating."""
    incident = load(session, incident_id)
    if incident.state != IncidentState.TRIGGERED:
        raise _refuse(incident, "acknowledge")
    _set_state(incident, IncidentState.ACKNOWLEDGED, now)
    incident.acknowledged_at, incident.acknowledged_by = now, str(actor)
    _stop_escalation(session, incident, f"acknowledged by {actor}", now)
    return [
        _record(
            session,
            incident,
            TimelineKind.ACKNOWLEDGED,
            f"acknowledged by {actor}",
            actor=actor,
            message=message,
            now=now,
        )
    ]


def set_status(
    session: Session,
    incident_id: int,
    status: IncidentState,
    actor: Actor,
    message: str | None,
    now: datetime,
) -> list[IncidentEvent]:
    """Investigating, identified or monitoring; from triggered it acknowledges too."""
    if status not in WORKING:
        raise Conflict(
            f"status must be one of {', '.join(s.value for s in WORKING)}; use acknowledge, "
            "resolve or reopen for the others",
            field="status",
        )
    incident = load(session, incident_id)
    if incident.state not in ACTIVE or incident.state == status:
        raise _refuse(incident, f"set {status.value} on")
    if incident.state == IncidentState.TRIGGERED:
        incident.acknowledged_at, incident.acknowledged_by = now, str(actor)
        _stop_escalation(session, incident, f"{status.value} set by {actor}", now)
    before = incident.state
    _set_state(incident, status, now)
    return [
        _record(
            session,
            incident,
            TimelineKind.STATUS_CHANGED,
            f"{status.value} (was {before}), set by {actor}",
            actor=actor,
            message=message,
            now=now,
            data={"from": before, "to": status.value},
        )
    ]


def resolve(
    session: Session, incident_id: int, actor: Actor, message: str | None, now: datetime
) -> list[IncidentEvent]:
    """It is over: close it, stop escalating, tell everyone it was paged to."""
    incident = load(session, incident_id, correlation=True)
    if incident.state == IncidentState.RESOLVED:
        raise _refuse(incident, "resolve")
    _set_state(incident, IncidentState.RESOLVED, now)
    _stop_escalation(session, incident, f"resolved by {actor}", now)
    incident.quiet_until = None
    said = f"resolved by {actor}" + (f": {message}" if message else "")
    details: dict[str, Any] = {"by": actor.name, "via": actor.via}
    if message:
        details["message"] = message
    entry_id = lifecycle.close(session, incident, now, now, said, actor=actor.name, data=details)
    return [
        IncidentEvent(
            int(incident_id),
            TimelineKind.RESOLVED,
            incident.severity,
            pages=True,
            data=details,
            entry_id=entry_id,
        )
    ]


def reopen(
    session: Session, incident_id: int, actor: Actor, message: str | None, now: datetime
) -> list[IncidentEvent]:
    """Not over after all: open again, triggered, and page again."""
    incident = load(session, incident_id, correlation=True)
    if incident.state != IncidentState.RESOLVED:
        raise _refuse(incident, "reopen")
    lifecycle.reopen_incident(session, incident, now, pages=True)
    return [
        _record(
            session,
            incident,
            TimelineKind.REOPENED,
            f"reopened by {actor}",
            actor=actor,
            message=message,
            now=now,
            pages=True,
        )
    ]


def add_note(
    session: Session, incident_id: int, actor: Actor, message: str | None, now: datetime
) -> list[IncidentEvent]:
    """A note on the timeline (any state)."""
    if not message or not message.strip():
        raise ValidationFailed("message: a note needs a non-empty message", field="message")
    incident = load(session, incident_id)
    return [
        _record(
            session,
            incident,
            TimelineKind.NOTE,
            f"note by {actor}",
            actor=actor,
            message=message.strip(),
            now=now,
        )
    ]


def assign(
    session: Session,
    incident_id: int,
    assignee: str,
    actor: Actor,
    message: str | None,
    now: datetime,
) -> list[IncidentEvent]:
    """Name who owns it now."""
    incident = load(session, incident_id)
    if incident.state == IncidentState.RESOLVED:
        raise _refuse(incident, "assign")
    if incident.assignee == assignee:
        raise Conflict(
            f"incident {incident_id} is already assigned to {assignee}", field="assignee"
        )
    before = incident.assignee
    incident.assignee = assignee
    return [
        _record(
            session,
            incident,
            TimelineKind.ASSIGNED,
            f"assigned to {assignee} by {actor}",
            actor=actor,
            message=message,
            now=now,
            data={"from": before, "to": assignee},
        )
    ]


def set_severity(
    session: Session,
    incident_id: int,
    severity: str,
    actor: Actor,
    message: str | None,
    now: datetime,
) -> list[IncidentEvent]:
    """Change the severity; raising it above what was paged pages again."""
    incident = load(session, incident_id)
    if incident.state == IncidentState.RESOLVED:
        raise _refuse(incident, "change the severity of")
    if incident.severity == severity:
        raise Conflict(f"incident {incident_id} is already {severity}", field="severity")
    before = incident.severity
    incident.severity = severity
    raised = incident.paged_severity is not None and severity_rank(severity) < severity_rank(
        incident.paged_severity
    )
    if raised:
        incident.paged_severity, incident.paged_at = severity, now
    return [
        _record(
            session,
            incident,
            TimelineKind.SEVERITY_RAISED if raised else TimelineKind.SEVERITY_CHANGED,
            f"severity {before} -> {severity}, set by {actor}",
            actor=actor,
            message=message,
            now=now,
            pages=raised,
            data={"from": before, "to": severity},
        )
    ]
