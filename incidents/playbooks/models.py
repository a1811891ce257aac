"""The tables of playbook runs: one row per run, one per step it ran or will run.

A run is written in the pipeline's transaction when a trigger matches (or by a manual
run), with a frozen copy of its playbook, so that editing the file changes no run already
started. A worker claims it under a lease, runs one step at a time and commits each
step's start before acting and its outcome after: a worker that dies leaves the step in
flight marked `running`, which tells the next worker what it may repeat.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidents.db import JSONType, UTCDateTime


class RunStatus(StrEnum):
    """Where a run is."""

    PENDING = "pending"  # written, waiting for a worker
    RUNNING = "running"  # a worker holds it
    WAITING_APPROVAL = "waiting_approval"  # a step waits for a person
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # a step not safe to repeat was in flight when its worker died
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # the approval was refused
    EXPIRED = "expired"  # nobody approved in time


ACTIVE_RUN = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)
FINISHED_RUN = tuple(s for s in RunStatus if s not in ACTIVE_RUN)


class StepStatus(StrEnum):
    """Where a step is."""

    PENDING = "pending"
    RUNNING = "running"  # started and not finished: in flight, or its worker died
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # its `if` was false, or the run stopped before it
    WOULD_RUN = "would_run"  # a dry run rendered it
    INTERRUPTED = "interrupted"


class PlaybookRun(SQLModel, table=True):
    """One run of one playbook against one incident."""

    __tablename__ = "playbook_runs"
    __table_args__ = (
        # The policy's counts: runs of a playbook per incident, and in the last hour.
        Index("ix_playbook_runs_limits", "playbook_id", "created_at"),
        Index("ix_playbook_runs_incident", "incident_id", "playbook_id"),
        # The sweep: active runs whose lease lapsed, and approvals past their expiry.
        Index("ix_playbook_runs_status", "status"),
        # One run per playbook for one triggering event: a retried job adds none.
        UniqueConstraint("playbook_id", "incident_id", "trigger_key", name="uq_playbook_runs"),
    )

    id: int | None = Field(default=None, primary_key=True)
    playbook_id: str = Field(sa_column=Column(String(128), nullable=False))
    incident_id: int = Field(
        sa_column=Column(Integer, sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False)
    )
    # The event that matched (incident_opened, ...), or "manual".
    trigger: str = Field(sa_column=Column(String(32), nullable=False))
    # What made it: "entry:<timeline id>" for an event, "manual:<random>" for a request.
    trigger_key: str = Field(sa_column=Column(String(64), nullable=False))
    dry_run: bool = Field(sa_column=Column(Boolean, nullable=False))
    status: str = Field(sa_column=Column(String(24), nullable=False))
    # The playbook as it was when the run was created (its document, validated).
    playbook: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    # What the trigger saw: the matching alert's fingerprint, the event's timeline id.
    context: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    created_by: str = Field(sa_column=Column(String(255), nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    # The worker's claim; another worker may take the run once it lapses.
    lease_owner: str | None = Field(default=None, sa_column=Column(String(64)))
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # The step waiting for approval, its SMS code, and when the request expires.
    approval_step: int | None = Field(default=None, sa_column=Column(Integer))
    approval_code: int | None = Field(default=None, sa_column=Column(Integer))
    approval_expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # The steps a person approved (positions), and who decided last, and when.
    approved_steps: list[int] = Field(sa_column=Column(JSONType, nullable=False))
    decided_by: str | None = Field(default=None, sa_column=Column(String(255)))
    decided_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    error: str | None = Field(default=None, sa_column=Column(Text))


class PlaybookStep(SQLModel, table=True):
    """One step of a run: what it was given, when it ran, and what came of it."""

    __tablename__ = "playbook_steps"
    __table_args__ = (UniqueConstraint("run_id", "position", name="uq_playbook_steps"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(
        sa_column=Column(
            Integer, sa.ForeignKey("playbook_runs.id", ondelete="CASCADE"), nullable=False
        )
    )
    # The step's place in the playbook; a compensating step follows at 1000 + position.
    position: int = Field(sa_column=Column(Integer, nullable=False))
    name: str = Field(sa_column=Column(String(128), nullable=False))
    action: str = Field(sa_column=Column(String(64), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # The rendered parameters, secrets redacted.
    params: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    output: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))


RUNS: Table = PlaybookRun.__table__  # type: ignore[attr-defined]
STEPS: Table = PlaybookStep.__table__  # type: ignore[attr-defined]
