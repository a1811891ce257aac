"""The stage seam: what a pipeline stage receives and what it may hand on.

Stages run in the job's transaction, in order (incidents now; routing, escalation and
playbook triggers later). A stage reads and writes through `ctx.session`, appends what
happened to incidents to `ctx.events` for the stages after it, and puts work for other
queues in `ctx.after_commit`: the runner hands that on only once the transaction has
committed, so a rolled-back job never sends anything. No stage makes a network call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from incidents.vocab import TimelineKind


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """Something that happened to an incident in this job; `pages` marks what notifies."""

    incident_id: int
    kind: TimelineKind
    severity: str
    pages: bool
    data: dict[str, Any] = field(default_factory=dict)
    # The timeline entry that records it: a stable key for the work it causes.
    entry_id: int | None = None


@dataclass(frozen=True, slots=True)
class TaskRef:
    """A task to enqueue after commit: its registered name and keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Seconds to wait before running it (0: at once).
    countdown: float = 0.0


@dataclass
class RunContext:
    """One stage call's view of the job."""

    session: Session
    now: datetime
    fingerprints: list[str]
    events: list[IncidentEvent] = field(default_factory=list)
    after_commit: list[TaskRef] = field(default_factory=list)


class Stage(Protocol):
    """One step of the pipeline, run in the job's transaction."""

    name: str

    def run(self, ctx: RunContext) -> None:
        """Do this stage's part for ctx.fingerprints; read alerts after any lock it takes."""
        ...
