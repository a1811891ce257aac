"""Climbing the ladder: the escalation state lives on the incident, and a sweep runs the
steps that are due.

When an incident first pages through a route that names a policy, the policy is copied
onto the incident (`incidents.escalation`, frozen: editing the policy later changes no
escalation already running) and `escalation_due_at` is set to when level 1 pages. The
sweep, every `pipeline.escalation_sweep_seconds` on beat (or the embedded worker), picks
due incidents with `FOR NO KEY UPDATE SKIP LOCKED` on PostgreSQL, so several workers share the
work and never take the same incident; for each it writes the level's notifications,
one timeline entry, and the next deadline, in one transaction per batch of up to
`BATCH` incidents (one statement each for the pick, the incidents, the entries and the
notifications). A worker killed mid-step commits nothing, so the step runs once, at the
next sweep. One `run_due` call stops after about `BUDGET_SECONDS` and says whether more
is due; its callers then sweep again at once instead of waiting an interval. No Celery
countdowns: with Redis a countdown longer than the visibility timeout runs twice.

Acknowledging or resolving clears the deadline and cancels notifications a level
scheduled for later (personal rules such as "call me after 5 minutes").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents import bulk, timeline
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
BATCH = 500
# A run_due call stops starting batches after this long and says more is due, so that
# its caller (the embedded worker has other duties) sweeps again soon instead.
BUDGET_SECONDS = 1.0
# Parsed frozen policies by their JSON: thousands of incidents share a handful.
POLICY_CACHE = 256
_policies: dict[bytes, Policy] = {}

_C = INCIDENTS.c


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
    # Due incidents taken (stepped, or dropped as no longer escalating).
    picked: int = 0
    # run_due stopped at its time budget with a full batch: sweep again at once.
    more: bool = False


@dataclass(slots=True)
class Due:
    """The columns of a due incident that a step reads and writes."""

    id: int
    severity: str
    root_cause_candidates: list[str]
    escalation: dict[str, Any] | None
    escalation_due_at: datetime | None
    updated_at: datetime | None = None


def frozen_policy(document: dict[str, Any]) -> Policy:
    """The policy frozen on an incident, parsed once per distinct document."""
    key = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    policy = _policies.get(key)
    if policy is None:
        policy = Policy.model_validate(document)
        if len(_policies) >= POLICY_CACHE:
            _policies.clear()
        _policies[key] = policy
    return policy


def sweep(session: Session, directory: Directory, now: datetime, limit: int = BATCH) -> Sweep:
    """Run every due step (up to `limit`) in the caller's transaction: one statement
    picks the batch, and one each saves the incidents, the timeline entries and the
    notifications."""
    pick = (
        select(
            _C.id,
            _C.status,
            _C.state,
            _C.severity,
            _C.root_cause_candidates,
            _C.escalation,
            _C.escalation_due_at,
        )
        .where(_C.escalation_due_at <= now)
        .order_by(_C.escalation_due_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        # FOR NO KEY UPDATE: two sweepers still exclude each other, but a transaction
        # inserting a row that refers to the incident (a notification, a timeline entry;
        # its foreign-key check takes KEY SHARE) no longer makes the sweep pass it by.
        pick = pick.with_for_update(skip_locked=True, of=INCIDENTS, key_share=True)
    done = Sweep(tasks=[], delays=[])
    assert done.delays is not None
    over: list[int] = []  # someone has it, or it is over
    stepped: list[Due] = []
    rows: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for found in session.execute(pick).all():
        done.picked += 1
        if (
            found.status != IncidentStatus.OPEN
            or found.state != IncidentState.TRIGGERED
            or not found.escalation
        ):
            over.append(found.id)
            continue
        incident = Due(
            found.id,
            found.severity,
            list(found.root_cause_candidates or []),
            found.escalation,
            found.escalation_due_at,
        )
        done.delays.append((now - found.escalation_due_at).total_seconds())
        made, entry = step(incident, directory, now)
        rows += made
        entries.append(entry)
        stepped.append(incident)
    done.steps = len(stepped)
    if over:
        session.execute(update(INCIDENTS).where(_C.id.in_(over)).values(escalation_due_at=None))
    if stepped:
        _save(session, stepped, now)
    timeline.write(session, entries, ids=False)
    if rows:
        insert_rows(session, rows)
        done.tasks = wake_ups(RunContext(session=session, now=now, fingerprints=[]), rows)
    return done


def _save(session: Session, stepped: list[Due], now: datetime) -> None:
    """Write the stepped incidents' escalation state and next deadline."""
    bulk.update(
        session,
        INCIDENTS,
        [
            {
                "id": i.id,
                "escalation": i.escalation,
                "escalation_due_at": i.escalation_due_at,
                "updated_at": now,
            }
            for i in stepped
        ],
    )


def page_key(state: dict[str, Any]) -> str:
    """The event key of the notifications of the step `state` stands at: run (each
    start of the ladder, see `freeze`), round and level."""
    return f"{KEY_PREFIX}{int(state.get('run', 0))}:{int(state['round'])}:{int(state['level'])}"


def step(
    incident: Incident | Due, directory: Directory, now: datetime
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Page the current level of the incident's frozen policy, and set the next deadline;
    return the notification rows and the timeline entry to write."""
    state = dict(incident.escalation or {})
    policy = frozen_policy(state["policy"])
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
    key = page_key(state)
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
    factory: sessionmaker[Session],
    now: datetime | None = None,
    *,
    budget: float | None = None,
    batch: int | None = None,
) -> Sweep:
    """Sweep in batches, each its own transaction, until nothing due is left or `budget`
    seconds have gone; `more` then says a full batch was found last, so the caller
    sweeps again at once rather than after its interval. What the beat task and the
    embedded worker call."""
    budget = BUDGET_SECONDS if budget is None else budget
    batch = batch or BATCH
    total = Sweep(tasks=[], delays=[])
    assert total.tasks is not None and total.delays is not None
    started = time.monotonic()
    while True:
        with session_scope(factory) as session:
            at = now or utcnow()
            done = sweep(session, Directory(session), at, batch)
        total.steps += done.steps
        total.picked += done.picked
        total.tasks += done.tasks or []
        total.delays += done.delays or []
        if done.picked < batch:
            return total
        if time.monotonic() - started >= budget:
            total.more = True
            return total


def run_for(
    factory: sessionmaker[Session], seconds: float, hand_on: Callable[[list[TaskRef]], None]
) -> int:
    """run_due again at once while more is due, for up to `seconds`, handing on each
    call's tasks as it commits; the steps run. What the beat task does: its next run
    (queued meanwhile) carries on from there."""
    started = time.monotonic()
    steps = 0
    while True:
        done = run_due(factory)
        hand_on(done.tasks or [])
        steps += done.steps
        if not done.more or time.monotonic() - started >= seconds:
            return steps
