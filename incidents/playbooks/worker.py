"""Where runs are executed: threads of the API process (embedded default), or Celery.

Both take run ids from the pipeline's after-commit hand-offs and from a periodic sweep
that hands out again the runs whose hand-off was lost or whose worker died (its lease
lapsed), and expires approval requests nobody answered. A run is claimed under its
lease, so a run handed out twice runs once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.db import session_scope, utcnow
from incidents.pipeline.stages import TaskRef
from incidents.tasks import PLAYBOOK_TASK

from . import approval, store
from .execute import Executor

log = logging.getLogger(__name__)


def sweep(sessions: sessionmaker[Session]) -> list[int]:
    """Expire unanswered approvals; return the runs to hand out again."""
    now = utcnow()
    with session_scope(sessions) as session:
        for run_id in store.expired_approvals(session, now):
            approval.expire(session, run_id, now)
        return store.due_runs(session, now)


class EmbeddedPlaybookWorker:
    """Runs playbook runs in threads of this process."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        on_commit: Callable[[list[TaskRef]], None] | None = None,
        threads: int = 2,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._executor = Executor(sessions, settings, on_commit=on_commit)
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._threads = threads
        self._workers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._queued: set[int] = set()
        self._lock = threading.Lock()

    def hand_on(self, tasks: list[TaskRef]) -> None:
        """Queue the runs among the after-commit hand-offs."""
        for ref in tasks:
            if ref.name == PLAYBOOK_TASK:
                self.submit(int(ref.kwargs["run_id"]))

    def submit(self, run_id: int) -> None:
        """Queue a run (once, while it waits)."""
        with self._lock:
            if run_id in self._queued:
                return
            self._queued.add(run_id)
        self._queue.put(run_id)

    def start(self) -> None:
        """Start the worker threads and the sweep."""
        self._stop.clear()
        for i in range(self._threads):
            thread = threading.Thread(target=self._loop, name=f"playbooks-{i}", daemon=True)
            thread.start()
            self._workers.append(thread)
        sweeper = threading.Thread(target=self._sweep_loop, name="playbooks-sweep", daemon=True)
        sweeper.start()
        self._workers.append(sweeper)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking runs; a step in flight finishes or is resumed after a restart."""
        self._stop.set()
        for _ in range(self._threads):
            self._queue.put(None)
        for thread in self._workers:
            thread.join(timeout)
        self._workers = []

    def _loop(self) -> None:
        while not self._stop.is_set():
            run_id = self._queue.get()
            if run_id is None:
                return
            with self._lock:
                self._queued.discard(run_id)
            try:
                self._executor.run(run_id)
            except Exception:
                log.exception("playbook run %s failed in the embedded worker", run_id)

    def _sweep_loop(self) -> None:
        interval = self._settings.playbooks.sweep_interval_seconds
        while not self._stop.wait(interval):
            try:
                for run_id in sweep(self._sessions):
                    self.submit(run_id)
            except Exception:
                log.exception("playbook sweep failed")
