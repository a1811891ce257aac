"""Acting on an incident: acknowledge, resolve, reopen, status, notes, assign, merge,
severity. Each takes an optional JSON body with a `message` (an empty body is fine),
answers the incident as it is afterwards, and answers 409 naming the current state when
the transition is not allowed. The change and the notifications it calls for are one
transaction; the notify worker is woken once it has committed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from incidents.api.incident_schemas import IncidentOut, Severity
from incidents.api.incidents import incident_out
from incidents.api.queries import incidents as queries
from incidents.api.schemas import ErrorBody
from incidents.apikeys.scopes import INCIDENTS_WRITE
from incidents.db import session_scope, utcnow
from incidents.models import Incident
from incidents.pipeline import actions, merging
from incidents.pipeline.actions import Actor
from incidents.pipeline.runner import route_events
from incidents.pipeline.stages import IncidentEvent
from incidents.vocab import IncidentState

from .deps import check_token, service
from .params import IncidentId, strict_params
from .principal import current, require

router = APIRouter(
    prefix="/api/v1/incidents",
    tags=["incident actions"],
    dependencies=[Depends(check_token), require(INCIDENTS_WRITE), Depends(strict_params)],
)


class ActionIn(BaseModel):
    """What every action takes: why, and who (both optional)."""

    model_config = ConfigDict(extra="forbid")

    message: str | None = Field(
        default=None, max_length=4000, description="Why; shown on the timeline and in chat."
    )
    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Who acts, recorded on the timeline: honoured for an admin key (a bot "
        "acting for a person); otherwise the key's owner, else `key:<name>`, is recorded.",
    )


class StatusIn(ActionIn):
    """The working status to set."""

    status: Literal["investigating", "identified", "monitoring"] = Field(
        description="The new status; from `triggered` it also acknowledges."
    )


class NoteIn(ActionIn):
    """The note."""

    message: str = Field(  # required here
        min_length=1, max_length=4000, pattern=r"\S", description="The note's text."
    )


class AssignIn(ActionIn):
    """Whom to assign it to."""

    assignee: str = Field(min_length=1, max_length=255, description="Who owns it now.")


class SeverityIn(ActionIn):
    """The severity to set."""

    severity: Severity = Field(description="The new severity; a raise above what was paged pages.")


class MergeIn(ActionIn):
    """Which incidents to fold into this one."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sources: list[int] = Field(
        alias="from",
        min_length=1,
        max_length=100,
        description="Ids of open incidents to merge into this one.",
    )


Act = Callable[[Session, datetime], list[IncidentEvent]]

# Besides the errors every operation documents: the transition is not allowed now.
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "The transition is not allowed in the incident's current state, "
        "which the message names (or the incident was merged into another).",
    }
}


def _run(request: Request, incident_id: int, act: Act) -> IncidentOut:
    state = service(request)
    now = utcnow()
    with session_scope(state.sessions) as session:
        events = act(session, now)
        tasks = route_events(session, state.settings, events, now)
        row = session.get(Incident, incident_id)
        assert row is not None  # the action found it under its lock
        prints = queries.fingerprints_of(session, ids=[incident_id])[incident_id]
        out = IncidentOut.model_validate(incident_out(row, prints))
    state.dispatcher.hand_on(tasks)
    return out


def _actor(request: Request, body: ActionIn | None) -> Actor:
    # The key's owner (or name); only an admin key may record someone else in `by`.
    return Actor(current(request).acting_as(body.by if body is not None else None))


def _message(body: ActionIn | None) -> str | None:
    return body.message if body is not None else None


Optional = Annotated[ActionIn | None, Body()]


@router.post(
    "/{incident_id}/acknowledge",
    response_model=IncidentOut,
    summary="Acknowledge",
    responses=CONFLICT,
)
def acknowledge(request: Request, incident_id: IncidentId, body: Optional = None) -> IncidentOut:
    """Someone has it: `triggered` becomes `acknowledged` and escalation stops."""
    return _run(
        request,
        incident_id,
        lambda s, now: actions.acknowledge(
            s, incident_id, _actor(request, body), _message(body), now
        ),
    )


@router.post(
    "/{incident_id}/resolve", response_model=IncidentOut, summary="Resolve", responses=CONFLICT
)
def resolve(request: Request, incident_id: IncidentId, body: Optional = None) -> IncidentOut:
    """It is over: resolved, escalation stops, and everyone paged is told."""
    return _run(
        request,
        incident_id,
        lambda s, now: actions.resolve(s, incident_id, _actor(request, body), _message(body), now),
    )


@router.post(
    "/{incident_id}/reopen", response_model=IncidentOut, summary="Reopen", responses=CONFLICT
)
def reopen(request: Request, incident_id: IncidentId, body: Optional = None) -> IncidentOut:
    """Not over after all: back to `triggered`, taking alerts, and paged again."""
    return _run(
        request,
        incident_id,
        lambda s, now: actions.reopen(s, incident_id, _actor(request, body), _message(body), now),
    )


@router.post(
    "/{incident_id}/status",
    response_model=IncidentOut,
    summary="Set the status",
    responses=CONFLICT,
)
def set_status(
    request: Request, incident_id: IncidentId, body: Annotated[StatusIn, Body()]
) -> IncidentOut:
    """`investigating`, `identified` or `monitoring`."""
    status = IncidentState(body.status)
    return _run(
        request,
        incident_id,
        lambda s, now: actions.set_status(
            s, incident_id, status, _actor(request, body), body.message, now
        ),
    )


@router.post(
    "/{incident_id}/notes", response_model=IncidentOut, summary="Add a note", responses=CONFLICT
)
def add_note(
    request: Request, incident_id: IncidentId, body: Annotated[NoteIn, Body()]
) -> IncidentOut:
    """A note on the timeline; `message` is the note."""
    return _run(
        request,
        incident_id,
        lambda s, now: actions.add_note(s, incident_id, _actor(request, body), body.message, now),
    )


@router.post(
    "/{incident_id}/assign", response_model=IncidentOut, summary="Assign", responses=CONFLICT
)
def assign(
    request: Request, incident_id: IncidentId, body: Annotated[AssignIn, Body()]
) -> IncidentOut:
    """Name who owns the incident now."""
    return _run(
        request,
        incident_id,
        lambda s, now: actions.assign(
            s, incident_id, body.assignee, _actor(request, body), body.message, now
        ),
    )


@router.post(
    "/{incident_id}/severity",
    response_model=IncidentOut,
    summary="Set the severity",
    responses=CONFLICT,
)
def set_severity(
    request: Request, incident_id: IncidentId, body: Annotated[SeverityIn, Body()]
) -> IncidentOut:
    """Change the severity; raising it above what was paged pages again."""
    return _run(
        request,
        incident_id,
        lambda s, now: actions.set_severity(
            s, incident_id, body.severity, _actor(request, body), body.message, now
        ),
    )


@router.post(
    "/{incident_id}/merge",
    response_model=IncidentOut,
    summary="Merge others into it",
    responses=CONFLICT,
)
def merge(
    request: Request, incident_id: IncidentId, body: Annotated[MergeIn, Body()]
) -> IncidentOut:
    """Fold the open incidents in `from` into this one, as the correlation would."""
    settings = service(request).settings
    return _run(
        request,
        incident_id,
        lambda s, now: merging.merge(
            s, settings, incident_id, body.sources, _actor(request, body), body.message, now
        ),
    )
