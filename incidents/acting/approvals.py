"""Approving or rejecting a waiting playbook step from chat or a phone, in the caller's
transaction.

The decision is the playbook engine's (`incidents.playbooks.approval.decide`); this
module words its outcome for the person who answered, and turns a refusal (an unknown
run, a run no longer waiting) into a line for them to read rather than an error. The
returned tasks hand an approved run to a playbook worker; the caller hands them on once
its transaction has committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from incidents.exceptions import Conflict, NotFound
from incidents.pipeline.stages import TaskRef
from incidents.playbooks import approval, store


@dataclass
class Decided:
    """What one answer did: a line for the person, and what to hand on after commit."""

    ok: bool
    text: str
    tasks: list[TaskRef] = field(default_factory=list)


def decide(
    session: Session, run_id: int, *, approve: bool, actor: str, via: str, now: datetime
) -> Decided:
    """Approve or reject the step run `run_id` waits on, as `actor` reached through `via`."""
    run = store.load_run(session, run_id)
    step = ""
    if run is not None and run["approval_step"] is not None:
        step = str(run["playbook"]["steps"][int(run["approval_step"])]["name"])
    # decide() refuses before it writes anything, so the transaction stays clean.
    try:
        tasks = approval.decide(
            session, run_id, approve=approve, actor=actor, via=via, message=None, now=now
        )
    except (NotFound, Conflict) as exc:
        return Decided(False, exc.message)
    assert run is not None
    playbook = run["playbook_id"]
    if approve:
        text = f"Approved: run {run_id} of playbook {playbook} goes on with step {step}"
    else:
        text = f"Rejected: run {run_id} of playbook {playbook} stops; step {step} will not run"
    return Decided(True, text, tasks)


def decide_for_incident(
    session: Session, incident_id: int, *, approve: bool, actor: str, via: str, now: datetime
) -> Decided:
    """Decide on the incident's latest run waiting for approval."""
    run_id = approval.waiting_for_incident(session, incident_id)
    if run_id is None:
        return Decided(False, f"No playbook run of incident #{incident_id} waits for approval")
    return decide(session, run_id, approve=approve, actor=actor, via=via, now=now)


def decide_by_code(
    session: Session, code: int, *, approve: bool, actor: str, via: str, now: datetime
) -> Decided:
    """Decide on the waiting run whose approval code this is."""
    run_id = approval.by_code(session, code)
    if run_id is None:
        return Decided(False, f"No playbook run waits for approval code {code}")
    return decide(session, run_id, approve=approve, actor=actor, via=via, now=now)
