"""Playbook tasks, on the `playbooks` queue: run one run by id, and the sweep.

A message only says "look at this run": the run's row and its lease are the work. A
message lost with a killed worker, delivered twice or late changes nothing: the sweep
hands out every run whose lease lapsed, and a run is claimed by one worker at a time.
"""

from __future__ import annotations

from functools import lru_cache

from incidents.config import get_settings
from incidents.playbooks.execute import Executor
from incidents.playbooks.worker import sweep as sweep_runs
from incidents.tasks import PLAYBOOK_QUEUE, PLAYBOOK_SWEEP_TASK, PLAYBOOK_TASK
from workers.app import celery_app, session_factory
from workers.pipeline import hand_on


@lru_cache(maxsize=1)
def executor() -> Executor:
    """This process's executor; what its actions hand on goes through the broker."""
    return Executor(session_factory(), get_settings(), on_commit=hand_on)


@celery_app.task(name=PLAYBOOK_TASK)  # type: ignore[untyped-decorator]
def run(run_id: int) -> str:
    """Run what is left of a playbook run; return its status."""
    return executor().run(run_id)


@celery_app.task(name=PLAYBOOK_SWEEP_TASK)  # type: ignore[untyped-decorator]
def sweep() -> list[int]:
    """Expire unanswered approvals and hand out runs whose worker died."""
    due = sweep_runs(session_factory())
    for run_id in due:
        run.apply_async(kwargs={"run_id": run_id}, queue=PLAYBOOK_QUEUE)
    return due
