"""Run pipeline jobs from the outbox: claim, run every stage, record the outcome.

A job is claimed under a lease (see `lease`), so any number of workers (embedded or
Celery) may be handed the same id and only one runs it. A job whose worker died is
handed out again once its lease lapses, and the dead worker's run can never commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import PipelineSettings, Settings
from incidents.db import session_scope, utcnow
from incidents.models import JOBS
from incidents.pipeline.lease import (
    Heartbeat,
    LeaseLost,
    claim,
    fail_exhausted,
    finish,
    give_back,
)
from incidents.pipeline.stages import IncidentEvent, RunContext, Stage, TaskRef
from incidents.vocab import JobStatus

log = logging.getLogger(__name__)

# Fingerprints per stage call. A storm body (or many jobs claimed together) can hold
# more than a statement can bind (PostgreSQL: 65,535 parameters) in the stages' IN lists.
STAGE_SLICE = 10_000


_built: dict[int, tuple[Settings, list[Stage]]] = {}


def build_stages(settings: Settings) -> list[Stage]:
    """The pipeline's stages in order, built once per Settings object."""
    cached = _built.get(id(settings))
    if cached is not None and cached[0] is settings:
        return cached[1]
    from incidents.notify.stage import RoutingStage
    from incidents.pipeline.incidents import IncidentStage
    from incidents.playbooks.stage import PlaybookStage

    built: list[Stage] = (
        [IncidentStage(settings), RoutingStage(settings), PlaybookStage(settings)]
        if settings.correlation.enabled
        else []
    )
    _built[id(settings)] = (settings, built)
    return built


def route_events(
    session: Session, settings: Settings, events: list[IncidentEvent], now: datetime
) -> list[TaskRef]:
    """Hand incident events made outside a job (the upkeep closing a quiet flapping
    incident) to the stages after the incident stage, in the caller's transaction;
    return what they hand on after commit."""
    ctx = RunContext(session=session, now=now, fingerprints=[], events=list(events))
    for stage in build_stages(settings)[1:]:
        stage.run(ctx)
    return ctx.after_commit


def run_job(
    factory: sessionmaker[Session],
    job_id: int,
    full_settings: Settings,
    pipeline: Sequence[Stage] | None = None,
    *,
    on_commit: Callable[[list[TaskRef]], None] | None = None,
    events: list[IncidentEvent] | None = None,
) -> str:
    """Run a job (and the others it claims) through every stage; return its final status:
    'done', 'pending' (to be retried), 'failed', 'skipped' (another run has it) or 'lost'
    (another worker took it over while this one ran; nothing was committed).

    `on_commit` receives the stages' after-commit tasks once the job has committed, and
    only then; `events`, when given, collects the incident events of a committed run.
    """
    settings = full_settings.pipeline
    stages = build_stages(full_settings) if pipeline is None else pipeline
    held = claim(factory, job_id, settings)
    if held is None:
        return "skipped"
    happened: list[IncidentEvent] = []
    handed: list[TaskRef] = []
    with Heartbeat(factory, held, settings) as heartbeat:
        try:
            with session_scope(factory) as session:
                rows = session.execute(select(JOBS.c.fingerprints).where(JOBS.c.id.in_(held.ids)))
                fingerprints = sorted({fp for (fps,) in rows for fp in fps})
                # Slices keep each stage's IN lists under the database's bind-parameter
                # limit (65,535 on PostgreSQL) when a storm brings one huge job.
                for at in range(0, max(len(fingerprints), 1), STAGE_SLICE):
                    ctx = RunContext(
                        session=session,
                        now=utcnow(),
                        fingerprints=fingerprints[at : at + STAGE_SLICE],
                        events=happened,
                        after_commit=handed,
                    )
                    for stage in stages:
                        heartbeat.check()
                        stage.run(ctx)
                finish(session, held)
        except LeaseLost:
            log.warning("pipeline job %s was taken over by another worker; not committed", job_id)
            return "lost"
        except Exception as exc:
            log.exception("pipeline job %s failed (with %d claimed)", job_id, len(held.ids))
            return give_back(factory, held, job_id, f"{type(exc).__name__}: {exc}", settings)
    if events is not None:
        events.extend(happened)
    if handed and on_commit is not None:
        on_commit(handed)
    return "done"


def due_jobs(
    factory: sessionmaker[Session], settings: PipelineSettings, limit: int = 5000
) -> list[int]:
    """Ids to hand out again: jobs whose hand-off was lost or dropped, whose worker let the
    lease lapse, or that wait for a retry.

    A run takes up to `max_jobs_per_run` waiting jobs with it, so of the pending ones only
    one id in that many is returned.
    """
    fail_exhausted(factory, settings)
    now = utcnow()
    older = now - timedelta(seconds=settings.sweep_interval_seconds)
    with session_scope(factory) as session:
        pending = session.scalars(
            select(JOBS.c.id)
            .where(JOBS.c.status == JobStatus.PENDING)
            .where(JOBS.c.created_at < older)
            .order_by(JOBS.c.id)
            .limit(limit)
        ).all()
        lapsed = session.scalars(
            select(JOBS.c.id)
            .where(JOBS.c.status == JobStatus.RUNNING)
            .where(JOBS.c.lease_until < now)
            .order_by(JOBS.c.id)
            .limit(limit)
        ).all()
    step = settings.max_jobs_per_run
    return sorted({int(i) for i in lapsed} | {int(i) for i in pending[::step]})


def pending_count(factory: sessionmaker[Session]) -> int:
    """How many jobs wait in the outbox (for /metrics)."""
    with session_scope(factory) as session:
        return int(
            session.scalar(
                select(func.count()).select_from(JOBS).where(JOBS.c.status == JobStatus.PENDING)
            )
            or 0
        )
