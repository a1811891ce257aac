"""Climbing the ladder: the escalation state lives on the incident, and a sweep runs the
steps that are due.

When an incident first pages through a route that names a policy, the policy is copied
onto the incident (`incidents.escalation`, frozen: editing the policy later changes no
escalation already running) and `escalation_due_at` is set to when level 1 pages. The
sweep, every `escalation.sweep_interval_seconds` on beat (or the embedded worker), picks
due incidents with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers share the
work and never take the same incident; for each it writes the level's notifications,
one timeline entry, and the next deadline, in one transaction. A worker killed mid-step
commits nothing, so the step runs once, at the next sweep. No Celery countdowns: with
Redis a countdown longer than the visibility timeout runs twice.

Acknowledging or resolving clears the deadline and cancels notifications a level
scheduled for later (personal rules such as "call me after 5 minutes").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from incidents import timeline
from incidents.db import session_scope, utcnow
from incidents.escalation.directory import Directory, Page
from incidents.escalation.policy import Policy
from incidents.models import INCIDENTS, Incident
from incidents.notify.stage import insert_rows, wake_ups
from incidents.pipeline import lifecycle
from incidents.pipeline.stages import RunContext, TaskRef
from incidents.vocab import IncidentState, IncidentStatus, TimelineKind

log = logging.getLogger(__name__)
KEY_PREFIX = lifecycle.ESCALATION_KEYS
# Incidents stepped per transaction: the batch is locked, stepped and committed together.
BATCH = 100


def freeze(incident: Incident, policy: Policy, receiver: str, first_at: datetime) -> bool:
    """Start escalating an incident with a copy of `policy`; False if it already is."""
    if incident.escalation_due_at is not None:
        return False
    # Each start is a new run, whose notifications have keys of their own: a reopened
    # incident pages the levels an earlier run used again (the outbox drops a row whose
    # key it already holds).
    before = incident.escalation
    run = int(before.get("run", 0)) + 1 if before else 0
    incident.escalation = {
        "policy": policy.model_dump(mode="json", exclude_none=True),
        "receiver": receiver,
        "run": run,
        "level": 0,
        "round": 0,
        "started_at": first_at.isoformat(),
    }
    incident.escalation_due_at = first_at
    return True


@dataclass
class Sweep:
    """What one sweep did."""

    steps: int = 0
    tasks: list[TaskRef] | None = None
    # Seconds between each step's deadline and when it ran.
    delays: list[float] | None = None


def sweep(session: Session, directory: Directory, now: datetime, limit: int = BATCH) -> Sweep:
    """Run every due step (up to `limit`) in the caller's transaction."""
    pick = (
        select(Incident)
        .where(INCIDENTS.c.escalation_due_at <= now)
        .order_by(INCIDENTS.c.escalation_due_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True, of=INCIDENTS)
    done = Sweep(tasks=[], delays=[])
    rows: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    ctx = RunContext(session=session, now=now, fingerprints=[])
    for incident in session.scalars(pick):
        due = incident.escalation_due_at
        if (
            incident.status != IncidentStatus.OPEN
            or incident.state != IncidentState.TRIGGERED
            or not incident.escalation
        ):
            incident.escalation_due_at = None  # someone has it, or it is over
            continue
        assert done.delays is not None and due is not None
        done.delays.append((now - due).total_seconds())
        made, entry = step(incident, directory, now)
        rows += made
        entries.append(entry)
        done.steps += 1
    # One statement each for the batch's timeline entries and notifications.
    timeline.write(session, entries)
    if rows:
        insert_rows(session, rows)
        done.tasks = wake_ups(ctx, rows)
    return done


def step(
    incident: Incident, directory: Directory, now: datetime
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Page the current level of the incident's frozen policy, and set the next deadline;
    return the notification rows and the timeline entry to write."""
    state = dict(incident.escalation or {})
    policy = Policy.model_validate(state["policy"])
    level_no, round_no = int(state["level"]), int(state["round"])
    level = policy.levels[level_no]
    incident_id = int(incident.id or 0)
    pages: list[Page] = []
    said: list[str] = []
    gaps: list[dict[str, Any]] = []
    for target in level.targets:
        found, text = directory.resolve(target, incident, now)
        if not found and target.needs_oncall:
            found, covered, rule = directory.cover_gap(target, policy, incident, now)
            text += f": nobody on call, {covered}"
            gaps.append({"target": target.describe(), "covered_by": rule})
            log.warning("escalation of incident %s: %s", incident_id, text)
        pages += found
        said.append(text)
    first = (level_no, round_no) == (0, 0)
    event = "opened" if first else "escalated"
    key = f"{KEY_PREFIX}{int(state.get('run', 0))}:{round_no}:{level_no}"
    rows = [page.row(incident_id, key, event, f"policy:{policy.name}", now) for page in pages]
    wait = level.wait_for(incident.severity)
    last = level_no + 1 >= len(policy.levels)
    if not last:
        state["level"] = level_no + 1
    elif round_no < policy.repeat:
        state |= {"level": 0, "round": round_no + 1}
    else:
        state["done"] = True
    incident.escalation = state
    incident.escalation_due_at = None if state.get("done") else now + wait
    ladder = f"level {level_no + 1} of {len(policy.levels)}"
    if policy.repeat:
        ladder += f", round {round_no + 1} of {policy.repeat + 1}"
    ending = (
        "; nobody acknowledged and the policy is exhausted"
        if state.get("done")
        else f"; next step at {incident.escalation_due_at:%H:%M:%S} UTC unless acknowledged"
    )
    entry = timeline.entry(
        incident_id,
        TimelineKind.ESCALATED,
        f"escalation policy {policy.name}, {ladder}: {'; '.join(said)}{ending}",
        at=now,
        data={
            "policy": policy.name,
            "level": level_no + 1,
            "round": round_no + 1,
            "paged": [p.as_data() for p in pages],
            "done": bool(state.get("done")),
            # Each target that had nobody on call, and what was paged instead.
            "gaps": gaps,
        },
    )
    incident.updated_at = now
    return rows, entry


def run_due(
    factory: sessionmaker[Session], now: datetime | None = None, *, max_batches: int = 50
) -> Sweep:
    """Sweep in batches, each its own transaction, until nothing due is left (or the
    bound): what the beat task and the embedded worker call."""
    total = Sweep(tasks=[], delays=[])
    for _ in range(max_batches):
        with session_scope(factory) as session:
            at = now or utcnow()
            done = sweep(session, Directory(session), at)
        total.steps += done.steps
        assert total.tasks is not None and total.delays is not None
        total.tasks += done.tasks or []
        total.delays += done.delays or []
        if done.steps < BATCH:
            break
    return total
