"""The Celery application: Redis as broker, tasks in one module per family."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings, get_settings
from incidents.db import create_db_engine, make_session_factory
from incidents.notify.worker import DIGEST_CHECK_SECONDS
from incidents.tasks import (
    DIGEST_TASK,
    ESCALATE_TASK,
    NOTIFY_SWEEP_TASK,
    PLAYBOOK_SWEEP_TASK,
    QUEUE,
    QUEUE_OF,
    SWEEP_TASK,
    UPKEEP_TASK,
)


def create_celery(settings: Settings) -> Celery:
    """A Celery app bound to the configured broker, with the outbox sweep on beat."""
    app = Celery(
        "incidents",
        broker=settings.broker_url or "memory://",
        include=["workers.pipeline", "workers.notify", "workers.playbooks"],
    )
    app.conf.update(
        # The outbox row and its lease make a job run, not the message: a message lost
        # with a worker or a broker is handed out again by the sweep. Acking early also
        # keeps few unacknowledged messages on the channel, which is what kombu 5.7
        # trips over when it closes a dead connection (see workers.supervisor).
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        # Reconnect for as long as the broker is down (the default gives up after 100
        # attempts and the worker exits).
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # Only tasks that ack late are affected; set so that none ever runs twice at once.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={"visibility_timeout": 3600},
        task_default_queue=QUEUE,
        task_routes={name: {"queue": queue} for name, queue in QUEUE_OF.items()},
        beat_schedule={
            "sweep-pipeline-outbox": {
                "task": SWEEP_TASK,
                "schedule": settings.pipeline.sweep_interval_seconds,
                # A sweep not run by the next one is superseded by it.
                "options": {"expires": settings.pipeline.sweep_interval_seconds},
            },
            "pipeline-upkeep": {
                "task": UPKEEP_TASK,
                "schedule": settings.pipeline.upkeep_interval_seconds,
                "options": {"expires": settings.pipeline.upkeep_interval_seconds},
            },
            "escalation-steps": {
                "task": ESCALATE_TASK,
                "schedule": settings.pipeline.escalation_sweep_seconds,
                "options": {"expires": settings.pipeline.escalation_sweep_seconds},
            },
            "sweep-notifications": {
                "task": NOTIFY_SWEEP_TASK,
                "schedule": settings.notify.sweep_interval_seconds,
                "options": {"expires": settings.notify.sweep_interval_seconds},
            },
            "playbook-runs": {
                "task": PLAYBOOK_SWEEP_TASK,
                "schedule": settings.playbooks.sweep_interval_seconds,
                "options": {"expires": settings.playbooks.sweep_interval_seconds},
            },
            "daily-digests": {
                "task": DIGEST_TASK,
                "schedule": DIGEST_CHECK_SECONDS,
                "options": {"expires": DIGEST_CHECK_SECONDS},
            },
        },
        timezone="UTC",
    )
    return app


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    """The worker process's database sessions (one engine per process)."""
    return make_session_factory(create_db_engine(get_settings().database_url, pool_size=4))


celery_app = create_celery(get_settings())
