"""A worker's hold on a run: its name on the lease, and a thread that keeps the lease
alive while a step waits on something slow (a lapsed lease hands the run to another)."""

from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy.orm import Session, sessionmaker

from incidents.db import session_scope, utcnow

from . import store

log = logging.getLogger(__name__)


def worker_id() -> str:
    """This worker's name on the leases it holds."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]


class LeaseKeeper:
    """Keeps the run's lease alive from a thread while a step waits on something slow."""

    def __init__(self, sessions: sessionmaker[Session], run_id: int, owner: str, seconds: float):
        self._args = (sessions, run_id, owner, seconds)
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._loop, name=f"lease-{run_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        sessions, run_id, owner, seconds = self._args
        while not self._stop.wait(seconds / 3):
            try:
                with session_scope(sessions) as session:
                    if not store.renew(session, run_id, owner, utcnow(), seconds):
                        self.lost = True
                        return
            except Exception:
                log.warning("could not renew the lease of playbook run %s", run_id)
