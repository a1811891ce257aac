"""One action by a person reached in chat or by phone, in the caller's transaction.

Acknowledge and resolve are the API's own actions (incidents.pipeline.actions); escalate
makes the incident's next escalation level due now, for the escalation sweep's next pass.
A refused transition comes back as its message, for the person to read, not as an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from incidents.exceptions import Conflict, NotFound
from incidents.models import Incident
from incidents.pipeline import actions
from incidents.pipeline.actions import Actor
from incidents.pipeline.stages import IncidentEvent
from incidents.vocab import IncidentState, TimelineKind

Verb = Literal["acknowledge", "resolve", "escalate"]
DONE = {"acknowledge": "Acknowledged", "resolve": "Resolved", "escalate": "Escalated"}


@dataclass
class Done:
    """What one action did: a line for the person, and the events to route."""

    ok: bool
    text: str
    events: list[IncidentEvent] = field(default_factory=list)


def perform(session: Session, incident_id: int, verb: Verb, actor: Actor, now: datetime) -> Done:
    """Do it; a refused or unknown incident is a `Done(ok=False)` saying why."""
    # Each action refuses before it writes anything, so a refusal leaves the transaction
    # as it was for the next incident (no savepoint: SQLite's driver mishandles them).
    try:
        if verb == "acknowledge":
            events = actions.acknowledge(session, incident_id, actor, None, now)
        elif verb == "resolve":
            events = actions.resolve(session, incident_id, actor, None, now)
        else:
            events = escalate_now(session, incident_id, actor, now)
    except (Conflict, NotFound) as exc:
        return Done(False, exc.message)
    incident = session.get(Incident, incident_id)
    title = incident.title if incident is not None else ""
    return Done(True, f"{DONE[verb]} #{incident_id} {title}".strip(), events)


def escalate_now(
    session: Session, incident_id: int, actor: Actor, now: datetime
) -> list[IncidentEvent]:
    """Make the next escalation level due now; the sweep pages it on its next pass."""
    incident = actions.load(session, incident_id)
    if incident.state != IncidentState.TRIGGERED:
        raise Conflict(
            f"cannot escalate incident {incident_id}: it is {incident.state}", field="state"
        )
    if not incident.escalation or incident.escalation.get("done"):
        raise Conflict(
            f"cannot escalate incident {incident_id}: it has no further escalation level",
            field="escalation",
        )
    incident.escalation_due_at = now
    return [
        actions._record(
            session,
            incident,
            TimelineKind.NOTE,
            f"escalation to the next level asked for by {actor}",
            actor=actor,
            message=None,
            now=now,
        )
    ]
