"""The Celery application: Redis as broker, tasks in one module per family."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings, get_settings
from incidents.db import create_db_engine, make_session_factory


def create_celery(settings: Settings) -> Celery:
    """A Celery app bound to the configured broker, with the outbox sweep on beat."""
    app = Celery(
        "incidents", broker=settings.broker_url or "memory://", include=["workers.pipeline"]
    )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        task_default_queue="incidents",
        beat_schedule={
            "sweep-pipeline-outbox": {
                "task": "workers.pipeline.sweep_outbox",
                "schedule": settings.pipeline.sweep_interval_seconds,
            }
        },
        timezone="UTC",
    )
    return app


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    """The worker process's database sessions (one engine per process)."""
    return make_session_factory(create_db_engine(get_settings().database_url, pool_size=4))


celery_app = create_celery(get_settings())
