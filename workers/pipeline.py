"""Pipeline tasks: run one job by id, sweep the outbox, and the periodic upkeep."""

from __future__ import annotations

import logging

from incidents.config import get_settings
from incidents.escalation.engine import run_for
from incidents.notify.reminders import SweepPace, run_reminders
from incidents.notify.routing import RoutingTree
from incidents.pipeline.maintenance import maintain
from incidents.pipeline.runner import due_jobs, run_job
from incidents.pipeline.stages import TaskRef
from incidents.tasks import ESCALATE_TASK, PIPELINE_TASK, QUEUE, QUEUE_OF, SWEEP_TASK, UPKEEP_TASK
from workers.app import celery_app, session_factory

log = logging.getLogger(__name__)


def hand_on(tasks: list[TaskRef]) -> None:
    """Publish what a committed job's stages handed on (a lost one is swept up later)."""
    for ref in tasks:
        try:
            celery_app.send_task(
                ref.name,
                kwargs=ref.kwargs,
                queue=QUEUE_OF.get(ref.name, QUEUE),
                countdown=ref.countdown or None,
                retry=False,
            )
        except Exception as exc:
            log.warning("could not hand on %s (%s); the sweep will", ref.name, exc)


@celery_app.task(name=PIPELINE_TASK)  # type: ignore[untyped-decorator]
def run_pipeline_job(job_id: int) -> str:
    """Run one outbox job through the pipeline."""
    return run_job(session_factory(), job_id, get_settings(), on_commit=hand_on)


@celery_app.task(name=SWEEP_TASK)  # type: ignore[untyped-decorator]
def sweep_outbox() -> int:
    """Hand out again the jobs whose hand-off was lost or whose worker's lease lapsed."""
    ids = due_jobs(session_factory(), get_settings().pipeline)
    for job_id in ids:
        run_pipeline_job.delay(job_id)
    return len(ids)


@celery_app.task(name=UPKEEP_TASK)  # type: ignore[untyped-decorator]
def upkeep() -> int:
    """Un-mute alerts whose silence ended, close quiet flapping incidents, and store the
    alert of every heartbeat that was missed."""
    ids = maintain(session_factory(), get_settings())
    for job_id in ids:
        run_pipeline_job.delay(job_id)
    return len(ids)


# This worker process's reminder sweeps (see incidents.notify.reminders).
_reminders = SweepPace()


@celery_app.task(name=ESCALATE_TASK)  # type: ignore[untyped-decorator]
def escalate() -> int:
    """Run the escalation steps that are due (while more are due than one sweep call's
    time budget, sweep again at once, for up to one beat interval), then the reminders
    (a route's repeat_interval); wake the channels they page."""
    settings = get_settings()
    steps = run_for(session_factory(), settings.pipeline.escalation_sweep_seconds, hand_on)
    tree = RoutingTree.from_settings(settings.routing)
    if _reminders.due(tree):
        hand_on(run_reminders(session_factory(), tree))
    return steps
