"""Approvals: a step that needs a person waits until someone approves or rejects it.

Asking writes the request on the run (the step, a four-digit code for SMS, an expiry)
and a timeline entry whose event the routing stage sends to the incident's Slack thread
(with Approve and Reject buttons), its email thread and by SMS (`approve 1234`). The
decision comes back through `decide`, from the API, a Slack button or an SMS reply; it
records who decided, and an approved run is handed to a worker again. A request nobody
answers expires (the sweep calls `expire`), and the run stops saying so.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents import timeline
from incidents.config import Settings
from incidents.exceptions import Conflict, NotFound
from incidents.pipeline.stages import IncidentEvent, TaskRef
from incidents.tasks import PLAYBOOK_TASK
from incidents.vocab import TimelineKind

from . import store
from .document import Step
from .models import RUNS, RunStatus, StepStatus


def _free_code(session: Session) -> int:
    """A four-digit code no other waiting run uses."""
    taken = {
        code
        for (code,) in session.execute(
            select(RUNS.c.approval_code).where(RUNS.c.status == RunStatus.WAITING_APPROVAL)
        )
    }
    while True:
        code = 1000 + secrets.randbelow(9000)
        if code not in taken:
            return code


def request(
    session: Session,
    settings: Settings,
    run: dict[str, Any],
    step: Step,
    position: int,
    now: datetime,
) -> list[TaskRef]:
    """Put the run on hold for approval of a step; return what to hand on after commit."""
    from incidents.pipeline.runner import route_events

    code = _free_code(session)
    expires = now + timedelta(seconds=settings.playbooks.approval_timeout_seconds)
    store.set_run(
        session,
        run["id"],
        status=RunStatus.WAITING_APPROVAL,
        approval_step=position,
        approval_code=code,
        approval_expires_at=expires,
        lease_owner=None,
        lease_until=None,
        updated_at=now,
    )
    ask = {
        "run_id": run["id"],
        "playbook": run["playbook_id"],
        "step": step.name,
        "action": step.action,
        "code": code,
        "expires_at": expires.isoformat(),
    }
    message = (
        f"playbook {run['playbook_id']}: run {run['id']} waits for approval of step "
        f"{step.name} ({step.action}); approve or reject with the Slack buttons, an SMS "
        f"'approve {code}' / 'reject {code}', or POST /api/v1/playbook-runs/{run['id']}/approve"
    )
    data = {"run_id": run["id"], "playbook": run["playbook_id"], "approval": ask}
    (entry_id,) = timeline.write(
        session,
        [
            timeline.entry(
                run["incident_id"],
                TimelineKind.PLAYBOOK_RUN,
                message,
                at=now,
                actor=f"playbook:{run['playbook_id']}",
                data=data,
            )
        ],
    )
    event = IncidentEvent(
        run["incident_id"], TimelineKind.PLAYBOOK_RUN, "", pages=False, data=data,
        entry_id=entry_id,
    )  # fmt: skip
    return route_events(session, settings, [event], now)


def decide(
    session: Session,
    run_id: int,
    *,
    approve: bool,
    actor: str,
    via: str,
    message: str | None,
    now: datetime,
) -> list[TaskRef]:
    """Approve or reject the step a run waits on; return the hand-off of an approved run.

    Raises NotFound for an unknown run and Conflict (naming its status) for a run that
    waits for nothing, so a second tap on a button says what happened instead of acting.
    """
    run = store.load_run(session, run_id, lock=True)
    if run is None:
        raise NotFound(f"no playbook run {run_id}")
    if run["status"] != RunStatus.WAITING_APPROVAL:
        raise Conflict(
            f"playbook run {run_id} is {run['status']}, not waiting for approval",
            status=run["status"],
        )
    position = int(run["approval_step"])
    step = run["playbook"]["steps"][position]["name"]
    verb = "approved" if approve else "rejected"
    said = f": {message}" if message else ""
    values: dict[str, Any] = {
        "decided_by": actor,
        "decided_at": now,
        "approval_code": None,
        "updated_at": now,
    }
    if approve:
        values.update(
            status=RunStatus.PENDING,
            approved_steps=[*(run["approved_steps"] or []), position],
            approval_step=None,
            approval_expires_at=None,
        )
    else:
        values.update(status=RunStatus.REJECTED, finished_at=now, error=f"{verb} by {actor}")
    store.set_run(session, run_id, **values)
    if not approve:
        _skip_rest(session, run_id)
    timeline.write(
        session,
        [
            timeline.entry(
                run["incident_id"],
                TimelineKind.PLAYBOOK_RUN,
                f"playbook {run['playbook_id']}: step {step} of run {run_id} {verb} by "
                f"{actor}{said}",
                at=now,
                actor=actor,
                data={
                    "run_id": run_id,
                    "playbook": run["playbook_id"],
                    "step": step,
                    "decision": verb,
                    "by": actor,
                    "via": via,
                },
            )
        ],
    )
    return [TaskRef(PLAYBOOK_TASK, {"run_id": run_id})] if approve else []


def by_code(session: Session, code: int) -> int | None:
    """The waiting run whose approval code this is."""
    found = session.execute(
        select(RUNS.c.id).where(
            RUNS.c.status == RunStatus.WAITING_APPROVAL, RUNS.c.approval_code == code
        )
    ).first()
    return int(found[0]) if found is not None else None


def waiting_for_incident(session: Session, incident_id: int) -> int | None:
    """The incident's most recent run waiting for approval."""
    found = session.execute(
        select(RUNS.c.id)
        .where(RUNS.c.status == RunStatus.WAITING_APPROVAL, RUNS.c.incident_id == incident_id)
        .order_by(RUNS.c.id.desc())
    ).first()
    return int(found[0]) if found is not None else None


def expire(session: Session, run_id: int, now: datetime) -> bool:
    """Stop a run whose approval request passed its expiry; False if it no longer waits."""
    run = store.load_run(session, run_id, lock=True)
    if run is None or run["status"] != RunStatus.WAITING_APPROVAL:
        return False
    store.set_run(
        session,
        run_id,
        status=RunStatus.EXPIRED,
        finished_at=now,
        updated_at=now,
        approval_code=None,
        error="nobody approved in time",
    )
    _skip_rest(session, run_id)
    timeline.write(
        session,
        [
            timeline.entry(
                run["incident_id"],
                TimelineKind.PLAYBOOK_RUN,
                f"playbook {run['playbook_id']}: run {run_id} expired: nobody approved it in time",
                at=now,
                data={"run_id": run_id, "playbook": run["playbook_id"], "status": "expired"},
            )
        ],
    )
    return True


def _skip_rest(session: Session, run_id: int) -> None:
    for row in store.load_steps(session, run_id):
        if row["status"] == StepStatus.PENDING:
            store.set_step(session, run_id, row["position"], status=StepStatus.SKIPPED)
