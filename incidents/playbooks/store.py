"""Playbook runs in the database: creating them within the policy's limits, claiming
them under a lease, and recording each step.

The limits are counted under the playbook's lock (PostgreSQL advisory lock; SQLite has
one writer at a time), in the same transaction that writes the run: however many jobs
match at once, no playbook runs more often than its policy allows. A manual dry run is
not counted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, not_, or_, select, update
from sqlalchemy.orm import Session

from incidents import timeline
from incidents.db import rowcount
from incidents.locks import lock_playbook
from incidents.vocab import TimelineKind

from .document import Playbook
from .models import ACTIVE_RUN, RUNS, STEPS, RunStatus, StepStatus

MANUAL = "manual"


@dataclass(frozen=True)
class Refusal:
    """Why the policy refused a run."""

    limit: str
    message: str


def refusal(
    session: Session, playbook: Playbook, incident_id: int, now: datetime
) -> Refusal | None:
    """Take the playbook's lock and check its policy; None when a run may start."""
    lock_playbook(session, playbook.id)
    policy = playbook.policy
    counted = and_(
        RUNS.c.playbook_id == playbook.id,
        not_(and_(RUNS.c.dry_run, RUNS.c.trigger == MANUAL)),
    )
    per_incident, last = session.execute(
        select(func.count(), func.max(RUNS.c.created_at)).where(
            counted, RUNS.c.incident_id == incident_id
        )
    ).one()
    if per_incident >= policy.max_runs_per_incident:
        return Refusal(
            "max_runs_per_incident",
            f"it ran {per_incident} time(s) for this incident (max_runs_per_incident "
            f"{policy.max_runs_per_incident})",
        )
    cooldown = playbook.cooldown_seconds()
    if cooldown and last is not None and last > now - timedelta(seconds=cooldown):
        return Refusal("cooldown", f"its last run was less than {policy.cooldown} ago")
    hourly = session.execute(
        select(func.count()).where(counted, RUNS.c.created_at > now - timedelta(hours=1))
    ).scalar_one()
    if hourly >= policy.max_runs_per_hour:
        return Refusal(
            "max_runs_per_hour",
            f"it ran {hourly} time(s) in the last hour (max_runs_per_hour "
            f"{policy.max_runs_per_hour})",
        )
    return None


def create_run(
    session: Session,
    playbook: Playbook,
    incident_id: int,
    *,
    trigger: str,
    trigger_key: str,
    dry_run: bool,
    actor: str,
    now: datetime,
    context: dict[str, Any] | None = None,
) -> int | None:
    """Write a run and its steps (pending) and a timeline entry; None when this
    trigger already made a run of this playbook for the incident."""
    exists = session.execute(
        select(RUNS.c.id).where(
            RUNS.c.playbook_id == playbook.id,
            RUNS.c.incident_id == incident_id,
            RUNS.c.trigger_key == trigger_key,
        )
    ).first()
    if exists is not None:
        return None
    run_id = session.execute(
        insert(RUNS)
        .values(
            playbook_id=playbook.id,
            incident_id=incident_id,
            trigger=trigger,
            trigger_key=trigger_key,
            dry_run=dry_run,
            status=RunStatus.PENDING,
            playbook=playbook.model_dump(mode="json", by_alias=True),
            context=context or {},
            created_at=now,
            created_by=actor,
            updated_at=now,
            approved_steps=[],
        )
        .returning(RUNS.c.id)
    ).scalar_one()
    session.execute(
        insert(STEPS),
        [
            {
                "run_id": run_id,
                "position": i,
                "name": step.name,
                "action": step.action,
                "status": StepStatus.PENDING,
                "attempts": 0,
            }
            for i, step in enumerate(playbook.steps)
        ],
    )
    kind = "dry run" if dry_run else "run"
    by = f" by {actor}" if trigger == MANUAL else f" (trigger: {trigger})"
    timeline.write(
        session,
        [
            timeline.entry(
                incident_id,
                TimelineKind.PLAYBOOK_RUN,
                f"playbook {playbook.id}: {kind} {run_id} queued{by}",
                at=now,
                actor=actor,
                data={
                    "run_id": run_id,
                    "playbook": playbook.id,
                    "status": RunStatus.PENDING,
                    "dry_run": dry_run,
                    "trigger": trigger,
                },
            )
        ],
    )
    return int(run_id)


def manual_key() -> str:
    """A trigger key for a run someone asked for."""
    return f"{MANUAL}:{secrets.token_hex(8)}"


def claim(session: Session, run_id: int, owner: str, now: datetime, lease_seconds: float) -> bool:
    """Take the run for this worker: it is pending or running with a lapsed lease."""
    lapsed = or_(RUNS.c.lease_until.is_(None), RUNS.c.lease_until < now)
    result = session.execute(
        update(RUNS)
        .where(
            RUNS.c.id == run_id,
            or_(
                RUNS.c.status == RunStatus.PENDING,
                and_(RUNS.c.status == RunStatus.RUNNING, lapsed),
            ),
        )
        .values(
            status=RunStatus.RUNNING,
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(RUNS.c.started_at, now),
            updated_at=now,
        )
    )
    return bool(rowcount(result))


def renew(session: Session, run_id: int, owner: str, now: datetime, lease_seconds: float) -> bool:
    """Extend this worker's lease; False when the run is no longer this worker's."""
    result = session.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id, RUNS.c.lease_owner == owner)
        .where(RUNS.c.status == RunStatus.RUNNING)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
    )
    return bool(rowcount(result))


def due_runs(session: Session, now: datetime, limit: int = 100) -> list[int]:
    """Runs to hand out again: pending, or running with a lapsed lease (a dead worker)."""
    rows = session.execute(
        select(RUNS.c.id)
        .where(
            or_(
                RUNS.c.status == RunStatus.PENDING,
                and_(RUNS.c.status == RunStatus.RUNNING, RUNS.c.lease_until < now),
            )
        )
        .order_by(RUNS.c.id)
        .limit(limit)
    )
    return [int(i) for (i,) in rows]


def expired_approvals(session: Session, now: datetime) -> list[int]:
    """Runs whose approval request passed its expiry."""
    rows = session.execute(
        select(RUNS.c.id).where(
            RUNS.c.status == RunStatus.WAITING_APPROVAL, RUNS.c.approval_expires_at < now
        )
    )
    return [int(i) for (i,) in rows]


def load_run(session: Session, run_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    """The run's row as a mapping (locked for update when asked), or None."""
    query = select(RUNS).where(RUNS.c.id == run_id)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).mappings().first()
    return dict(row) if row is not None else None


def load_steps(session: Session, run_id: int) -> list[dict[str, Any]]:
    """The run's steps in order."""
    rows = session.execute(
        select(STEPS).where(STEPS.c.run_id == run_id).order_by(STEPS.c.position)
    ).mappings()
    return [dict(r) for r in rows]


def set_step(session: Session, run_id: int, position: int, **values: Any) -> None:
    """Update one step's row."""
    session.execute(
        update(STEPS).where(STEPS.c.run_id == run_id, STEPS.c.position == position).values(**values)
    )


def add_step(session: Session, run_id: int, position: int, name: str, action: str) -> None:
    """Add a step row that the playbook did not list up front (a compensating step)."""
    exists = session.execute(
        select(STEPS.c.id).where(STEPS.c.run_id == run_id, STEPS.c.position == position)
    ).first()
    if exists is None:
        session.execute(
            insert(STEPS).values(
                run_id=run_id,
                position=position,
                name=name,
                action=action,
                status=StepStatus.PENDING,
                attempts=0,
            )
        )


def set_run(session: Session, run_id: int, **values: Any) -> None:
    """Update the run's row."""
    session.execute(update(RUNS).where(RUNS.c.id == run_id).values(**values))


def is_active(status: str) -> bool:
    """Whether a run with this status may still act."""
    return status in ACTIVE_RUN
