"""Playbooks: list and read them, run one against an incident, and follow, approve,
reject or cancel its runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request
from sqlalchemy.orm import Session

from incidents.apikeys.scopes import INCIDENTS_READ, INCIDENTS_WRITE
from incidents.db import session_scope, utcnow
from incidents.exceptions import NotFound
from incidents.pipeline.stages import TaskRef
from incidents.playbooks import approval, manual
from incidents.playbooks.catalog import Loaded, catalog_of
from incidents.tasks import PLAYBOOK_TASK

from .deps import check_token, db_session, service
from .incident_actions import CONFLICT
from .params import IncidentId, strict_params
from .playbook_schemas import DecisionIn, PlaybookOut, RunIn, RunOut
from .principal import current, require

router = APIRouter(
    prefix="/api/v1",
    tags=["playbooks"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)

PlaybookId = Annotated[
    str,
    Path(max_length=128, description="The playbook's id.", examples=["service-down"]),
]
RunId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The playbook run's id.", examples=[1])]
Decision = Annotated[DecisionIn | None, Body()]


def _loaded(request: Request, playbook_id: str) -> Loaded:
    loaded = catalog_of(service(request).settings.playbooks).get(playbook_id)
    if loaded is None:
        raise NotFound(f"no playbook {playbook_id!r}")
    return loaded


def _out(loaded: Loaded) -> PlaybookOut:
    p = loaded.playbook
    return PlaybookOut.model_validate(
        {
            "id": p.id,
            "description": p.description,
            "source": loaded.source,
            "triggers": [t.model_dump() for t in p.triggers],
            "conditions": list(p.conditions),
            "policy": p.policy.model_dump(),
            "steps": [
                {
                    "name": s.name,
                    "action": s.action,
                    "if": s.if_,
                    "approval": s.approval,
                    "on_failure": s.on_failure,
                    "params": s.params,
                }
                for s in p.steps
            ],
        }
    )


def _view(session: Session, run_id: int) -> RunOut:
    view = manual.run_view(session, run_id)
    if view is None:
        raise NotFound(f"no playbook run {run_id}")
    return RunOut.model_validate(view)


def _actor(request: Request) -> str:
    # The key's owner or name: who approved, rejected, ran or cancelled.
    return current(request).actor


@router.get(
    "/playbooks",
    response_model=list[PlaybookOut],
    summary="List playbooks",
    dependencies=[require(INCIDENTS_READ)],
)
def list_playbooks(request: Request) -> list[PlaybookOut]:
    """The playbooks of the configured folder, by id."""
    catalog = catalog_of(service(request).settings.playbooks)
    return [_out(catalog.playbooks[k]) for k in sorted(catalog.playbooks)]


@router.get(
    "/playbooks/{playbook_id}",
    response_model=PlaybookOut,
    summary="Get a playbook",
    dependencies=[require(INCIDENTS_READ)],
)
def get_playbook(request: Request, playbook_id: PlaybookId) -> PlaybookOut:
    """One playbook, as loaded from its file."""
    return _out(_loaded(request, playbook_id))


@router.post(
    "/playbooks/{playbook_id}/run",
    response_model=RunOut,
    status_code=202,
    summary="Run a playbook against an incident",
    responses=CONFLICT,
    dependencies=[require(INCIDENTS_WRITE)],
)
def run_playbook(request: Request, playbook_id: PlaybookId, body: RunIn) -> RunOut:
    """Queue a run (202); follow it at /api/v1/playbook-runs/{id}. A real run must fit the
    policy's limits (409 names the limit); a dry run never counts against them."""
    loaded = _loaded(request, playbook_id)
    state = service(request)
    with session_scope(state.sessions) as session:
        run_id = manual.start(
            session, loaded, body.incident_id, dry_run=body.dry_run, actor=_actor(request)
        )
        out = _view(session, run_id)
    state.dispatcher.hand_on([TaskRef(PLAYBOOK_TASK, {"run_id": run_id})])
    return out


@router.get(
    "/playbook-runs/{run_id}",
    response_model=RunOut,
    summary="Get a playbook run",
    dependencies=[require(INCIDENTS_READ)],
)
def get_run(run_id: RunId, session: Session = Depends(db_session)) -> RunOut:
    """A run with its status and every step's start, end, result and error."""
    return _view(session, run_id)


@router.get(
    "/incidents/{incident_id}/playbook-runs",
    response_model=list[RunOut],
    summary="List an incident's playbook runs",
    dependencies=[require(INCIDENTS_READ)],
)
def incident_runs(incident_id: IncidentId, session: Session = Depends(db_session)) -> list[RunOut]:
    """The incident's runs, newest first."""
    from incidents.models import Incident

    if session.get(Incident, incident_id) is None:
        raise NotFound(f"no incident {incident_id}")
    return [RunOut.model_validate(v) for v in manual.runs_of_incident(session, incident_id)]


def _decide(request: Request, run_id: int, body: DecisionIn | None, approve: bool) -> RunOut:
    state = service(request)
    with session_scope(state.sessions) as session:
        tasks = approval.decide(
            session,
            run_id,
            approve=approve,
            actor=_actor(request),
            via="api",
            message=body.message if body is not None else None,
            now=utcnow(),
        )
        out = _view(session, run_id)
    state.dispatcher.hand_on(tasks)
    return out


@router.post(
    "/playbook-runs/{run_id}/approve",
    response_model=RunOut,
    summary="Approve the step a run waits on",
    responses=CONFLICT,
    dependencies=[require(INCIDENTS_WRITE)],
)
def approve(request: Request, run_id: RunId, body: Decision = None) -> RunOut:
    """The run goes on with the step it waited on; 409 when it waits for nothing."""
    return _decide(request, run_id, body, True)


@router.post(
    "/playbook-runs/{run_id}/reject",
    response_model=RunOut,
    summary="Reject the step a run waits on",
    responses=CONFLICT,
    dependencies=[require(INCIDENTS_WRITE)],
)
def reject(request: Request, run_id: RunId, body: Decision = None) -> RunOut:
    """The run stops as `rejected`; 409 when it waits for nothing."""
    return _decide(request, run_id, body, False)


@router.post(
    "/playbook-runs/{run_id}/cancel",
    response_model=RunOut,
    summary="Cancel a playbook run",
    responses=CONFLICT,
    dependencies=[require(INCIDENTS_WRITE)],
)
def cancel(request: Request, run_id: RunId, body: Decision = None) -> RunOut:
    """No further step starts (one in flight finishes); 409 once the run has stopped."""
    with session_scope(service(request).sessions) as session:
        view = manual.cancel(
            session, run_id, _actor(request), body.message if body is not None else None
        )
    return RunOut.model_validate(view)
