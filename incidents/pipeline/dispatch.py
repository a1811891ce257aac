"""Hand committed pipeline jobs to whatever runs them: an in-process thread or Celery."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.pipeline.maintenance import maintain
from incidents.pipeline.runner import due_jobs, run_job

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Something that gets a committed job id to a worker."""

    def dispatch(self, job_id: int) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class EmbeddedWorker:
    """Runs pipeline jobs in a background thread of the API process (no broker).

    The thread also sweeps the outbox, so a job whose hand-off was lost (a crash
    between commit and dispatch) still runs.
    """

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self._factory = factory
        self._settings = settings
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def dispatch(self, job_id: int) -> None:
        """Queue a job for the worker thread."""
        self._queue.put(job_id)

    def start(self) -> None:
        """Start the worker thread."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="embedded-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Let queued jobs finish, then stop the thread."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        interval = self._settings.pipeline.sweep_interval_seconds
        next_sweep = time.monotonic() + interval
        while True:
            # Sweep on schedule even when the queue never runs dry.
            if time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + interval
            try:
                job_id = self._queue.get(timeout=max(0.0, next_sweep - time.monotonic()))
            except queue.Empty:
                continue
            if job_id is None:
                if self._stopping.is_set() and self._queue.empty():
                    return
                continue
            self._run(job_id)

    def _run(self, job_id: int) -> None:
        try:
            run_job(self._factory, job_id, self._settings)
        except Exception:
            log.exception("embedded worker could not run job %s", job_id)

    def _sweep(self) -> None:
        try:
            for job_id in maintain(self._factory, self._settings):
                self._run(job_id)
        except Exception:
            log.exception("pipeline upkeep failed")
        try:
            for job_id in due_jobs(self._factory, self._settings.pipeline):
                self._run(job_id)
        except Exception:
            log.exception("outbox sweep failed")


class CeleryDispatcher:
    """Sends job ids to the Celery workers through the broker."""

    def __init__(self, settings: Settings) -> None:
        from workers.app import create_celery

        self._app = create_celery(settings)

    def dispatch(self, job_id: int) -> None:
        """Enqueue the job; if the broker is down, the beat sweeper enqueues it later."""
        self._app.send_task("workers.pipeline.run_pipeline_job", args=[job_id])

    def start(self) -> None:
        """Nothing to start: the workers run elsewhere."""

    def stop(self) -> None:
        """Nothing to stop."""


def make_dispatcher(factory: sessionmaker[Session], settings: Settings) -> Dispatcher:
    """The embedded worker when no broker is configured, Celery otherwise."""
    if settings.embedded_worker:
        return EmbeddedWorker(factory, settings)
    return CeleryDispatcher(settings)
