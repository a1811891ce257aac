"""Run pipeline jobs from the outbox: claim, run every stage, record the outcome.

A job is claimed with a conditional UPDATE, so any number of workers (embedded or
Celery) may be handed the same id and only one runs it. A job that a crashed worker
left behind is claimed again once it is stale.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import PipelineSettings, Settings
from incidents.db import session_scope, utcnow
from incidents.models import JOBS, PipelineJob

log = logging.getLogger(__name__)

# Fingerprints per stage call. A storm body (or many jobs claimed together) can hold
# more than a statement can bind (PostgreSQL: 65,535 parameters) in the stages' IN lists.
STAGE_SLICE = 10_000


class Stage(Protocol):
    """One step of the pipeline; it runs in the job's transaction and reads the alerts
    itself (after taking whatever lock it needs, so it sees their latest state)."""

    name: str

    def __call__(self, session: Session, fingerprints: Sequence[str]) -> None: ...


_built: dict[int, tuple[Settings, list[Stage]]] = {}


def build_stages(settings: Settings) -> list[Stage]:
    """The pipeline's stages in order, built once per Settings object."""
    cached = _built.get(id(settings))
    if cached is not None and cached[0] is settings:
        return cached[1]
    from incidents.pipeline.incidents import IncidentStage

    built: list[Stage] = [IncidentStage(settings)] if settings.correlation.enabled else []
    _built[id(settings)] = (settings, built)
    return built


def claim(factory: sessionmaker[Session], job_id: int, settings: PipelineSettings) -> list[int]:
    """Claim a job if it is pending or stale, and with it up to `max_jobs_per_run - 1`
    other pending jobs; return the claimed ids ([] if this caller did not get the job).

    Under load every run takes whatever else waits, so the per-run cost (transactions,
    lock, reads) is shared; the runs later handed those ids find them taken and skip.
    """
    now = utcnow()
    stale = now - timedelta(seconds=settings.stale_after_seconds)
    with session_scope(factory) as session:
        result = session.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id)
            .where(
                or_(
                    JOBS.c.status == "pending",
                    (JOBS.c.status == "running") & (JOBS.c.claimed_at < stale),
                )
            )
            .values(status="running", claimed_at=now, attempts=JOBS.c.attempts + 1)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return []
        claimed = [job_id]
        extra = settings.max_jobs_per_run - 1
        if extra > 0:
            waiting = (
                select(JOBS.c.id).where(JOBS.c.status == "pending").order_by(JOBS.c.id).limit(extra)
            )
            if session.get_bind().dialect.name == "postgresql":
                waiting = waiting.with_for_update(skip_locked=True)
            more = session.execute(
                update(JOBS)
                .where(JOBS.c.id.in_(waiting.scalar_subquery()))
                .values(status="running", claimed_at=now, attempts=JOBS.c.attempts + 1)
                .returning(JOBS.c.id)
            )
            claimed.extend(int(i) for i in more.scalars())
        return claimed


def run_job(
    factory: sessionmaker[Session],
    job_id: int,
    full_settings: Settings,
    pipeline: Sequence[Stage] | None = None,
) -> str:
    """Run a job (and the others it claims) through every stage; return its final status
    ('skipped' if another run has it)."""
    settings = full_settings.pipeline
    stages = build_stages(full_settings) if pipeline is None else pipeline
    claimed = claim(factory, job_id, settings)
    if not claimed:
        return "skipped"
    try:
        with session_scope(factory) as session:
            jobs = list(session.scalars(select(PipelineJob).where(JOBS.c.id.in_(claimed))))
            fingerprints = sorted({fp for job in jobs for fp in job.fingerprints})
            for at in range(0, max(len(fingerprints), 1), STAGE_SLICE):
                part = fingerprints[at : at + STAGE_SLICE]
                for stage in stages:
                    stage(session, part)
            finished = utcnow()
            for job in jobs:
                job.status = "done"
                job.finished_at = finished
                job.error = None
        return "done"
    except Exception as exc:
        log.exception("pipeline job %s failed (with %d claimed)", job_id, len(claimed))
        with session_scope(factory) as session:
            status = "failed"
            for job in session.scalars(select(PipelineJob).where(JOBS.c.id.in_(claimed))):
                job.status = "failed" if job.attempts >= settings.max_attempts else "pending"
                job.error = f"{type(exc).__name__}: {exc}"[:2000]
                job.claimed_at = None
                if job.id == job_id:
                    status = job.status
            return status


def due_jobs(
    factory: sessionmaker[Session], settings: PipelineSettings, limit: int = 500
) -> list[int]:
    """Jobs whose enqueue was lost, whose worker died, or that wait for a retry."""
    now = utcnow()
    older = now - timedelta(seconds=settings.sweep_interval_seconds)
    stale = now - timedelta(seconds=settings.stale_after_seconds)
    with session_scope(factory) as session:
        rows = session.execute(
            select(JOBS.c.id)
            .where(
                or_(
                    (JOBS.c.status == "pending") & (JOBS.c.created_at < older),
                    (JOBS.c.status == "running") & (JOBS.c.claimed_at < stale),
                )
            )
            .order_by(JOBS.c.id)
            .limit(limit)
        )
        return [int(r[0]) for r in rows]


def pending_count(factory: sessionmaker[Session]) -> int:
    """How many jobs wait in the outbox (for /metrics)."""
    from sqlalchemy import func

    with session_scope(factory) as session:
        return int(
            session.scalar(select(func.count()).select_from(JOBS).where(JOBS.c.status == "pending"))
            or 0
        )
