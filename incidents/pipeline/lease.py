"""Leases on pipeline jobs: who runs a job, for how long, and proof of it at commit.

A worker claims jobs under a fresh token and a short lease, and a heartbeat thread
renews the lease while the job runs. A worker that dies stops renewing; once the lease
has lapsed, the sweep hands the job to another worker under a new token. The token is a
fence: finishing a job is an UPDATE that matches only the rows still under the caller's
token, in the same transaction as the job's work, so a worker whose lease was taken over
rolls back instead of committing a second result.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import PipelineSettings
from incidents.db import rowcount, session_scope, utcnow
from incidents.models import JOBS
from incidents.vocab import JobStatus

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took over a job this worker had claimed."""


@dataclass(frozen=True, slots=True)
class Claim:
    """Jobs held under one token until `lease_until` (renewed by the heartbeat)."""

    token: str
    ids: tuple[int, ...]


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Pending jobs, and running jobs whose worker let the lease lapse."""
    return or_(
        JOBS.c.status == JobStatus.PENDING,
        (JOBS.c.status == JobStatus.RUNNING) & (JOBS.c.lease_until < now),
    )


def claim(factory: sessionmaker[Session], job_id: int, settings: PipelineSettings) -> Claim | None:
    """Claim a job if it is pending or its lease lapsed, and with it up to
    `max_jobs_per_run - 1` other claimable jobs; None if this caller did not get it.

    Under load every run takes whatever else waits, so the per-run cost (transactions,
    lock, reads) is shared; the runs later handed those ids find them taken and skip.
    """
    now = utcnow()
    token = uuid.uuid4().hex
    held = {
        "status": "running",
        "claimed_at": now,
        "lease_until": now + timedelta(seconds=settings.lease_seconds),
        "claim_token": token,
        "attempts": JOBS.c.attempts + 1,
    }
    with session_scope(factory) as session:
        result = session.execute(
            update(JOBS).where(JOBS.c.id == job_id).where(_claimable(now)).values(**held)
        )
        if not rowcount(result):
            return None
        ids = [job_id]
        extra = settings.max_jobs_per_run - 1
        if extra > 0:
            waiting = select(JOBS.c.id).where(_claimable(now)).order_by(JOBS.c.id).limit(extra)
            if session.get_bind().dialect.name == "postgresql":
                waiting = waiting.with_for_update(skip_locked=True)
            # Picked first, then updated: as a subquery of the UPDATE, PostgreSQL may rescan
            # it per row, and each rescan skips the rows this statement already locked and
            # so takes the next ones: a run claimed every waiting job, not `extra` of them.
            picked = [int(i) for i in session.scalars(waiting)]
            if picked:
                more = session.execute(
                    update(JOBS)
                    .where(JOBS.c.id.in_(picked))
                    .where(_claimable(now))
                    .values(**held)
                    .returning(JOBS.c.id)
                )
                ids.extend(int(i) for i in more.scalars())
        return Claim(token, tuple(ids))


def renew(factory: sessionmaker[Session], held: Claim, settings: PipelineSettings) -> bool:
    """Extend the lease; False once any of the jobs is no longer under this token."""
    until = utcnow() + timedelta(seconds=settings.lease_seconds)
    with session_scope(factory) as session:
        result = session.execute(
            update(JOBS)
            .where(JOBS.c.claim_token == held.token)
            .where(JOBS.c.status == JobStatus.RUNNING)
            .values(lease_until=until)
        )
        return rowcount(result) == len(held.ids)


def finish(session: Session, held: Claim) -> None:
    """Mark the jobs done in the job's own transaction; raise LeaseLost (so that the
    caller rolls back its work) if another worker has taken any of them over."""
    result = session.execute(
        update(JOBS)
        .where(JOBS.c.claim_token == held.token)
        .where(JOBS.c.status == JobStatus.RUNNING)
        .values(status=JobStatus.DONE, finished_at=utcnow(), lease_until=None, error=None)
    )
    if rowcount(result) != len(held.ids):
        raise LeaseLost(f"job(s) {list(held.ids)} were taken over by another worker")


def give_back(
    factory: sessionmaker[Session],
    held: Claim,
    job_id: int,
    error: str,
    settings: PipelineSettings,
) -> str:
    """After a failed run: jobs still held go back to pending (or to failed once out of
    attempts); return `job_id`'s new status ('lost' if another worker holds it)."""
    status = "lost"
    with session_scope(factory) as session:
        rows = session.execute(
            select(JOBS.c.id, JOBS.c.attempts)
            .where(JOBS.c.claim_token == held.token)
            .where(JOBS.c.status == JobStatus.RUNNING)
        ).all()
        for row_id, attempts in rows:
            new = "failed" if attempts >= settings.max_attempts else "pending"
            session.execute(
                update(JOBS)
                .where(JOBS.c.id == row_id)
                .where(JOBS.c.claim_token == held.token)
                .values(status=new, error=error[:2000], claimed_at=None, lease_until=None)
            )
            if row_id == job_id:
                status = new
    return status


def fail_exhausted(factory: sessionmaker[Session], settings: PipelineSettings) -> int:
    """Give up on jobs whose workers keep dying (a job that kills its worker must not be
    handed out forever); return how many."""
    now = utcnow()
    with session_scope(factory) as session:
        result = session.execute(
            update(JOBS)
            .where(JOBS.c.status == JobStatus.RUNNING)
            .where(JOBS.c.lease_until < now)
            .where(JOBS.c.attempts >= settings.max_attempts)
            .values(
                status=JobStatus.FAILED,
                lease_until=None,
                error="its worker stopped before finishing, on every attempt",
            )
        )
        return rowcount(result)


class Heartbeat:
    """Renews a claim's lease every third of the lease while the job runs."""

    def __init__(
        self, factory: sessionmaker[Session], held: Claim, settings: PipelineSettings
    ) -> None:
        self.factory = factory
        self.held = held
        self.settings = settings
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-{self.held.ids[0]}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def check(self) -> None:
        """Raise LeaseLost if a renewal found the job taken over (no point going on)."""
        if self.lost.is_set():
            raise LeaseLost(f"job(s) {list(self.held.ids)} were taken over by another worker")

    def _beat(self) -> None:
        period = self.settings.lease_seconds / 3
        while not self._stop.wait(period):
            try:
                if not renew(self.factory, self.held, self.settings):
                    self.lost.set()
                    return
            except Exception:
                # The database may be back before the lease runs out; the fence at
                # commit decides in any case.
                log.warning("could not renew the lease of job(s) %s", list(self.held.ids))
