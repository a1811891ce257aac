"""Hand committed pipeline jobs to whatever runs them: an in-process thread or Celery."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.pipeline.maintenance import maintain
from incidents.pipeline.runner import due_jobs, run_job
from incidents.pipeline.stages import TaskRef
from incidents.tasks import PIPELINE_TASK, QUEUE, QUEUE_OF, task_sender

log = logging.getLogger(__name__)

# Ids waiting for the publisher; beyond this the hand-off is left to the sweep.
HANDOFF_CAPACITY = 10_000
PUBLISH_TIMEOUT_SECONDS = 1.0
# After a failed publish, skip the broker for this long rather than wait on it per id.
BROKER_DOWN_PAUSE_SECONDS = 1.0
FULL_LOG_EVERY_SECONDS = 10.0


class Dispatcher(Protocol):
    """Something that gets a committed job id to a worker."""

    def dispatch(self, job_id: int) -> None: ...

    def hand_on(self, tasks: list[TaskRef]) -> None:
        """Pass on what an action outside a job handed on after its commit."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class EmbeddedWorker:
    """Runs pipeline jobs in a background thread of the API process (no broker).

    The thread also sweeps the outbox, so a job whose hand-off was lost (a crash
    between commit and dispatch) still runs.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        on_commit: Callable[[list[TaskRef]], None] | None = None,
    ) -> None:
        self._factory = factory
        self._settings = settings
        # What the stages hand on after commit (the notify worker's wake-ups).
        self._on_commit = on_commit
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        from incidents.notify.reminders import SweepPace  # the notify layer loads lazily

        self._reminders = SweepPace()

    def dispatch(self, job_id: int) -> None:
        """Queue a job for the worker thread."""
        self._queue.put(job_id)

    def hand_on(self, tasks: list[TaskRef]) -> None:
        """Wake the embedded notify worker for what an action handed on."""
        if self._on_commit is not None and tasks:
            self._on_commit(tasks)

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
        pipeline = self._settings.pipeline
        next_sweep = time.monotonic() + pipeline.sweep_interval_seconds
        next_upkeep = time.monotonic() + pipeline.upkeep_interval_seconds
        next_escalation = time.monotonic() + pipeline.escalation_sweep_seconds
        while True:
            # Sweep on schedule even when the queue never runs dry.
            now = time.monotonic()
            if now >= next_upkeep:
                self._upkeep()
                next_upkeep = time.monotonic() + pipeline.upkeep_interval_seconds
            if now >= next_escalation:
                # More due than one call's time budget: again at once (a queued job
                # runs first), not after a whole interval.
                more = self._escalate()
                next_escalation = time.monotonic() + (
                    0.0 if more else pipeline.escalation_sweep_seconds
                )
            if now >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + pipeline.sweep_interval_seconds
            try:
                job_id = self._queue.get(
                    timeout=max(
                        0.0, min(next_sweep, next_upkeep, next_escalation) - time.monotonic()
                    )
                )
            except queue.Empty:
                continue
            if job_id is None:
                if self._stopping.is_set() and self._queue.empty():
                    return
                continue
            self._run(job_id)

    def _run(self, job_id: int) -> None:
        try:
            run_job(self._factory, job_id, self._settings, on_commit=self._on_commit)
        except Exception:
            log.exception("embedded worker could not run job %s", job_id)

    def _upkeep(self) -> None:
        try:
            for job_id in maintain(self._factory, self._settings):
                self._run(job_id)
        except Exception:
            log.exception("pipeline upkeep failed")

    def _escalate(self) -> bool:
        """Run the due escalation steps (about a second's worth at most); True when
        more are due."""
        from incidents.escalation.engine import run_due
        from incidents.notify.reminders import run_reminders
        from incidents.notify.routing import RoutingTree

        try:
            done = run_due(self._factory)
            self.hand_on(done.tasks or [])
        except Exception:
            log.exception("escalation sweep failed")
            return False
        try:
            tree = RoutingTree.from_settings(self._settings.routing)
            if self._reminders.due(tree):
                self.hand_on(run_reminders(self._factory, tree))
        except Exception:
            log.exception("reminder sweep failed")
        return done.more

    def _sweep(self) -> None:
        try:
            for job_id in due_jobs(self._factory, self._settings.pipeline):
                self._run(job_id)
        except Exception:
            log.exception("outbox sweep failed")


class CeleryDispatcher:
    """Sends job ids to the Celery workers through the broker, from a thread of its own.

    `dispatch` never waits for the broker: it only queues the id (bounded). The publisher
    thread sends each once, without retries and with short timeouts; while the broker is
    down it drops ids instead of trying each. Nothing is lost by dropping: the job's row
    is already committed, and the outbox sweep hands it out once the broker is back.
    """

    def __init__(self, settings: Settings, capacity: int = HANDOFF_CAPACITY) -> None:
        self._app = task_sender(settings.broker_url, timeout=PUBLISH_TIMEOUT_SECONDS)
        self._queue: queue.Queue[int | TaskRef | None] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._paused_until = 0.0
        self._broker_down = False
        self._full_logged_at = -FULL_LOG_EVERY_SECONDS
        # Counted by one thread each, so neither needs a lock.
        self.skipped_broker_down = 0
        self.skipped_queue_full = 0

    def dispatch(self, job_id: int) -> None:
        """Queue the id for the publisher; leave it to the sweep if the queue is full."""
        try:
            self._queue.put_nowait(job_id)
        except queue.Full:
            self.skipped_queue_full += 1
            if time.monotonic() - self._full_logged_at >= FULL_LOG_EVERY_SECONDS:
                self._full_logged_at = time.monotonic()
                log.warning("pipeline hand-off queue is full; the outbox sweep hands out the rest")

    def hand_on(self, tasks: list[TaskRef]) -> None:
        """Queue tasks for the publisher (a lost one is swept up by beat)."""
        for ref in tasks:
            try:
                self._queue.put_nowait(ref)
            except queue.Full:
                self.skipped_queue_full += 1

    def start(self) -> None:
        """Start the publisher thread."""
        self._thread = threading.Thread(target=self._loop, name="pipeline-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Publish what is queued (skipped while the broker is down), then stop."""
        if self._thread is None:
            return
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            if time.monotonic() < self._paused_until:
                self.skipped_broker_down += 1
                continue
            try:
                if isinstance(job_id, TaskRef):
                    self._app.send_task(
                        job_id.name,
                        kwargs=job_id.kwargs,
                        queue=QUEUE_OF.get(job_id.name, QUEUE),
                        countdown=job_id.countdown or None,
                        retry=False,
                    )
                else:
                    self._app.send_task(PIPELINE_TASK, args=[job_id], queue=QUEUE, retry=False)
            except Exception as exc:
                self.skipped_broker_down += 1
                self._paused_until = time.monotonic() + BROKER_DOWN_PAUSE_SECONDS
                if not self._broker_down:
                    self._broker_down = True
                    log.warning(
                        "broker unavailable (%s): pipeline hand-offs are skipped until it "
                        "answers; the outbox sweep hands those jobs out then",
                        exc,
                    )
            else:
                if self._broker_down:
                    self._broker_down = False
                    log.info(
                        "broker answers again; %d hand-off(s) so far were left to the sweep",
                        self.skipped_broker_down,
                    )


def make_dispatcher(
    factory: sessionmaker[Session],
    settings: Settings,
    on_commit: Callable[[list[TaskRef]], None] | None = None,
) -> Dispatcher:
    """The embedded worker when no broker is configured, Celery otherwise."""
    if settings.embedded_worker:
        return EmbeddedWorker(factory, settings, on_commit)
    return CeleryDispatcher(settings)
