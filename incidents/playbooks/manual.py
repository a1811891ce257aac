"""Runs someone asks for (the API's `run`, `incidents playbooks test`), and the run's view."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.db import session_scope, utcnow
from incidents.exceptions import Conflict, NotFound
from incidents.models import INCIDENTS

from . import store
from .catalog import Loaded
from .execute import Executor
from .models import RUNS, RunStatus
from .store import MANUAL


def start(
    session: Session,
    loaded: Loaded,
    incident_id: int,
    *,
    dry_run: bool,
    actor: str,
) -> int:
    """Write a manual run; a real one must fit the policy's limits (Conflict names the
    limit), a dry run never counts against them."""
    exists = session.execute(select(INCIDENTS.c.id).where(INCIDENTS.c.id == incident_id)).first()
    if exists is None:
        raise NotFound(f"no incident {incident_id}", field="incident_id")
    now = utcnow()
    if not dry_run:
        refused = store.refusal(session, loaded.playbook, incident_id, now)
        if refused is not None:
            raise Conflict(
                f"playbook {loaded.playbook.id} may not run now: {refused.message}",
                limit=refused.limit,
            )
    run_id = store.create_run(
        session,
        loaded.playbook,
        incident_id,
        trigger=MANUAL,
        trigger_key=store.manual_key(),
        dry_run=dry_run,
        actor=actor,
        now=now,
        context={"requested_by": actor},
    )
    assert run_id is not None  # a fresh manual key is never taken
    return run_id


def dry_run_now(
    sessions: sessionmaker[Session], settings: Settings, loaded: Loaded, incident_id: int
) -> dict[str, Any]:
    """Dry-run a playbook against an incident in this process; return the run's view."""
    with session_scope(sessions) as session:
        run_id = start(session, loaded, incident_id, dry_run=True, actor="cli")
    Executor(sessions, settings).run(run_id)
    with sessions() as session:
        view = run_view(session, run_id)
    assert view is not None
    return view


def run_view(session: Session, run_id: int) -> dict[str, Any] | None:
    """A run as the API shows it, with its steps in order."""
    run = store.load_run(session, run_id)
    if run is None:
        return None
    steps = [
        {
            "position": s["position"],
            "name": s["name"],
            "action": s["action"],
            "status": s["status"],
            "attempts": s["attempts"],
            "started_at": s["started_at"],
            "finished_at": s["finished_at"],
            "params": s["params"],
            "result": s["result"],
            "output": s["output"],
            "error": s["error"],
        }
        for s in store.load_steps(session, run_id)
    ]
    approval = None
    # A rejected or expired run keeps its approval_step, but waits for nothing.
    if run["approval_step"] is not None and run["status"] == RunStatus.WAITING_APPROVAL:
        approval = {
            "step": run["playbook"]["steps"][run["approval_step"]]["name"],
            "code": run["approval_code"],
            "expires_at": run["approval_expires_at"],
        }
    return {
        "id": run["id"],
        "playbook_id": run["playbook_id"],
        "incident_id": run["incident_id"],
        "status": run["status"],
        "dry_run": run["dry_run"],
        "trigger": run["trigger"],
        "created_at": run["created_at"],
        "created_by": run["created_by"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "approval": approval,
        "decided_by": run["decided_by"],
        "decided_at": run["decided_at"],
        "error": run["error"],
        "steps": steps,
    }


def runs_of_incident(session: Session, incident_id: int) -> list[dict[str, Any]]:
    """The incident's runs, newest first, with their steps."""
    ids = session.execute(
        select(RUNS.c.id).where(RUNS.c.incident_id == incident_id).order_by(RUNS.c.id.desc())
    ).scalars()
    return [v for v in (run_view(session, int(i)) for i in ids) if v is not None]


def cancel(session: Session, run_id: int, actor: str, message: str | None) -> dict[str, Any]:
    """Stop a run that has not finished; a step in flight finishes, no later one starts."""
    from incidents import timeline
    from incidents.vocab import TimelineKind

    from .models import StepStatus

    run = store.load_run(session, run_id, lock=True)
    if run is None:
        raise NotFound(f"no playbook run {run_id}")
    if not store.is_active(run["status"]):
        raise Conflict(
            f"playbook run {run_id} is {run['status']}; only a pending, running or waiting "
            "run can be cancelled",
            status=run["status"],
        )
    now = utcnow()
    store.set_run(
        session,
        run_id,
        status=RunStatus.CANCELLED,
        finished_at=now,
        updated_at=now,
        approval_code=None,
        error=f"cancelled by {actor}" + (f": {message}" if message else ""),
    )
    for row in store.load_steps(session, run_id):
        if row["status"] == StepStatus.PENDING:
            store.set_step(session, run_id, row["position"], status=StepStatus.SKIPPED)
    timeline.write(
        session,
        [
            timeline.entry(
                run["incident_id"],
                TimelineKind.PLAYBOOK_RUN,
                f"playbook {run['playbook_id']}: run {run_id} cancelled by {actor}"
                + (f": {message}" if message else ""),
                at=now,
                actor=actor,
                data={"run_id": run_id, "playbook": run["playbook_id"], "status": "cancelled"},
            )
        ],
    )
    view = run_view(session, run_id)
    assert view is not None
    return view
