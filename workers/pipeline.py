"""Pipeline tasks: run one job by id, sweep the outbox, and the periodic upkeep."""

from __future__ import annotations

from incidents.config import get_settings
from incidents.pipeline.maintenance import maintain
from incidents.pipeline.runner import due_jobs, run_job
from incidents.tasks import PIPELINE_TASK, SWEEP_TASK, UPKEEP_TASK
from workers.app import celery_app, session_factory


@celery_app.task(name=PIPELINE_TASK)  # type: ignore[untyped-decorator]
def run_pipeline_job(job_id: int) -> str:
    """Run one outbox job through the pipeline."""
    return run_job(session_factory(), job_id, get_settings())


@celery_app.task(name=SWEEP_TASK)  # type: ignore[untyped-decorator]
def sweep_outbox() -> int:
    """Hand out again the jobs whose hand-off was lost or whose worker's lease lapsed."""
    ids = due_jobs(session_factory(), get_settings().pipeline)
    for job_id in ids:
        run_pipeline_job.delay(job_id)
    return len(ids)


@celery_app.task(name=UPKEEP_TASK)  # type: ignore[untyped-decorator]
def upkeep() -> int:
    """Un-mute alerts whose silence ended and close quiet flapping incidents."""
    ids = maintain(session_factory(), get_settings())
    for job_id in ids:
        run_pipeline_job.delay(job_id)
    return len(ids)
