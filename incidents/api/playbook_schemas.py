"""The playbook API's bodies: playbooks as loaded, runs and their steps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TriggerOut(_Out):
    """One trigger of a playbook."""

    event: str = Field(description="incident_opened, severity_raised, alert_firing or resolved.")
    matchers: list[str] = Field(description="Alertmanager matchers on the incident's alerts.")


class StepSummary(_Out):
    """One step of a playbook, as written."""

    name: str = Field(description="The step's name; templates read it as `steps.NAME`.")
    action: str = Field(description="The registered action it runs.")
    if_: str | None = Field(alias="if", description="The condition on earlier steps, if any.")
    approval: str = Field(description="`required` when a person must approve it first.")
    on_failure: str = Field(description="stop, continue or compensate.")
    params: dict[str, Any] = Field(description="The templated parameters, as written.")


class PlaybookOut(_Out):
    """A playbook of the configured folder."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str = Field(description="The playbook's id.")
    description: str = Field(description="What it does.")
    source: str = Field(description="The file it was read from.")
    triggers: list[TriggerOut] = Field(description="The events and matchers that start it.")
    conditions: list[str] = Field(description="Conditions that must all hold for it to start.")
    policy: dict[str, Any] = Field(
        description="Limits: max_runs_per_incident, max_runs_per_hour, cooldown, approval, dry_run."
    )
    steps: list[StepSummary] = Field(description="The steps, in order.")


class RunIn(BaseModel):
    """A manual run of a playbook against an incident."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"incident_id": 12, "dry_run": True}]}
    )

    incident_id: int = Field(ge=1, le=2**31 - 1, description="The incident to run it against.")
    dry_run: bool = Field(
        default=False,
        description="Render every step and record what it would do, acting on nothing. A dry "
        "run does not count against the policy's limits.",
    )


class DecisionIn(BaseModel):
    """Why (optional), for approve, reject and cancel."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"message": "go ahead, I am watching"}]}
    )

    message: str | None = Field(
        default=None, max_length=4000, description="Why; recorded on the timeline."
    )


class StepOut(_Out):
    """One step of a run: when it ran and what came of it."""

    position: int = Field(description="Its place in the playbook (1000+ for a compensation).")
    name: str = Field(description="The step's name.")
    action: str = Field(description="The action it ran.")
    status: str = Field(
        description="pending, running, succeeded, failed, skipped, would_run or interrupted."
    )
    attempts: int = Field(description="How many times it was tried.")
    started_at: datetime | None = Field(description="When it started.")
    finished_at: datetime | None = Field(description="When it finished.")
    params: dict[str, Any] | None = Field(description="Its rendered parameters, secrets redacted.")
    result: dict[str, Any] | None = Field(description="Its structured result.")
    output: str | None = Field(description="Its output, size-limited, secrets redacted.")
    error: str | None = Field(description="Why it failed.")


class ApprovalOut(_Out):
    """The approval a run waits for."""

    step: str = Field(description="The step waiting for approval.")
    code: int | None = Field(description="The code to approve by SMS: `approve CODE`.")
    expires_at: datetime | None = Field(description="When the request expires.")


class RunOut(_Out):
    """A playbook run."""

    id: int = Field(description="The run's id.")
    playbook_id: str = Field(description="The playbook it runs.")
    incident_id: int = Field(description="The incident it runs against.")
    status: str = Field(
        description="pending, running, waiting_approval, succeeded, failed, interrupted, "
        "cancelled, rejected or expired."
    )
    dry_run: bool = Field(description="Whether it only records what it would do.")
    trigger: str = Field(description="The event that started it, or `manual`.")
    created_at: datetime = Field(description="When it was created.")
    created_by: str = Field(description="Who or what created it.")
    started_at: datetime | None = Field(description="When a worker first took it.")
    finished_at: datetime | None = Field(description="When it stopped.")
    approval: ApprovalOut | None = Field(description="The approval it waits for, if any.")
    decided_by: str | None = Field(description="Who last approved or rejected a step.")
    decided_at: datetime | None = Field(description="When.")
    error: str | None = Field(description="Why it stopped, when it did not succeed.")
    steps: list[StepOut] = Field(description="Its steps, in order.")
