"""Leases on pipeline jobs: a live worker keeps its job, a dead one loses it within seconds,
and a worker whose lease was taken over commits nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import PipelineSettings, Settings
from incidents.db import create_db_engine, make_session_factory, session_scope, utcnow
from incidents.locks import LockKey
from incidents.models import JOBS, PipelineJob
from incidents.pipeline.lease import Claim, claim, finish
from incidents.pipeline.runner import due_jobs, run_job
from incidents.pipeline.stages import RunContext
from tests.conftest import AUTH
from tests.factories import am_alert, am_payload
from tests.workers.processes import Command, service_env, wait_for


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the test database."""
    engine = create_db_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def _add_job(sessions: sessionmaker[Session], fingerprints: list[str]) -> int:
    with session_scope(sessions) as session:
        job = PipelineJob(created_at=utcnow(), fingerprints=fingerprints)
        session.add(job)
        session.flush()
        return int(job.id or 0)


def _job(sessions: sessionmaker[Session], job_id: int) -> dict[str, object]:
    with session_scope(sessions) as session:
        row = session.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().one()
        return dict(row)


def _expire(sessions: sessionmaker[Session], job_id: int) -> None:
    """What the clock does to the lease of a worker that stopped renewing it."""
    with session_scope(sessions) as session:
        session.execute(sa.update(JOBS).where(JOBS.c.id == job_id).values(lease_until=utcnow()))


class _TakenOverMidRun:
    """A stage during which the worker's lease lapses and another worker claims the job;
    then it writes, as a real stage would."""

    name = "taken-over"

    def __init__(self, sessions: sessionmaker[Session], job_id: int, fail: bool) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.fail = fail
        self.taker_token: str | None = None

    def run(self, ctx: RunContext) -> None:
        session = ctx.session
        _expire(self.sessions, self.job_id)
        taker = claim(self.sessions, self.job_id, PipelineSettings(max_jobs_per_run=1))
        assert taker is not None, "a lapsed lease must be claimable"
        self.taker_token = taker.token
        session.add(PipelineJob(created_at=utcnow(), fingerprints=["written-by-the-old-run"]))
        session.flush()
        if self.fail:
            raise RuntimeError("the old run fails after losing its lease")


def _marker_rows(sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as session:
        rows = session.execute(sa.select(JOBS.c.fingerprints)).scalars().all()
        return sum(1 for fps in rows if fps == ["written-by-the-old-run"])


@pytest.mark.parametrize("fail", [False, True], ids=["finishing", "failing"])
def test_a_worker_whose_lease_was_taken_over_commits_nothing(
    db_url: str, sessions: sessionmaker[Session], fail: bool
) -> None:
    settings = Settings(database_url=db_url, pipeline=PipelineSettings(max_jobs_per_run=1))
    job_id = _add_job(sessions, ["fp"])
    stage = _TakenOverMidRun(sessions, job_id, fail)

    assert run_job(sessions, job_id, settings, [stage]) == "lost"

    # Nothing the old run wrote was committed, and the job is the new worker's alone.
    assert _marker_rows(sessions) == 0
    row = _job(sessions, job_id)
    assert row["status"] == "running"
    assert row["claim_token"] == stage.taker_token
    assert row["attempts"] == 2
    assert row["error"] is None
    # The new worker finishes it; the old token can neither finish it nor claim it back.
    with session_scope(sessions) as session:
        assert stage.taker_token is not None
        finish(session, Claim(stage.taker_token, (job_id,)))
    assert _job(sessions, job_id)["status"] == "done"
    assert run_job(sessions, job_id, settings, []) == "skipped"


def test_a_live_worker_keeps_its_job_while_it_runs_longer_than_the_lease(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    lease = 1.0
    settings = Settings(
        database_url=db_url,
        pipeline=PipelineSettings(lease_seconds=lease, sweep_interval_seconds=0.1),
    )
    job_id = _add_job(sessions, ["slow"])
    running = threading.Event()
    release = threading.Event()

    class Slow:
        name = "slow"

        def run(self, ctx: RunContext) -> None:
            running.set()
            assert release.wait(30)

    result: list[str] = []
    worker = threading.Thread(
        target=lambda: result.append(run_job(sessions, job_id, settings, [Slow()]))
    )
    worker.start()
    try:
        assert running.wait(10)
        # Three lease lengths: without renewal the lease would have lapsed twice over.
        deadline = time.monotonic() + 3 * lease
        while time.monotonic() < deadline:
            assert job_id not in due_jobs(sessions, settings.pipeline)
            assert claim(sessions, job_id, settings.pipeline) is None
            time.sleep(0.1)
    finally:
        release.set()
        worker.join(30)
    assert result == ["done"]
    row = _job(sessions, job_id)
    assert (row["status"], row["attempts"]) == ("done", 1)


def test_the_sweep_hands_out_a_lapsed_job_and_a_batch_of_pending_ones(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    settings = PipelineSettings(sweep_interval_seconds=0.01, max_jobs_per_run=10)
    pending = [_add_job(sessions, [f"p{i}"]) for i in range(25)]
    lapsed = _add_job(sessions, ["lapsed"])
    held = claim(sessions, lapsed, PipelineSettings(max_jobs_per_run=1))
    assert held is not None
    _expire(sessions, lapsed)
    time.sleep(0.02)
    # One id per run's worth of pending jobs (a run takes ten), and the lapsed one.
    assert due_jobs(sessions, settings) == [pending[0], pending[10], pending[20], lapsed]


def test_a_job_that_kills_every_worker_is_given_up(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    settings = PipelineSettings(max_attempts=2, max_jobs_per_run=1)
    job_id = _add_job(sessions, ["poison"])
    for _ in range(2):
        assert claim(sessions, job_id, settings) is not None
        _expire(sessions, job_id)
    assert due_jobs(sessions, settings) == []
    row = _job(sessions, job_id)
    assert row["status"] == "failed"
    assert "stopped before finishing" in str(row["error"])


# (lease, sweep interval): short ones, and the defaults (None), so that a change to the
# defaults cannot quietly bring back a long wait.
TIMINGS = [(2.0, 1.0), None]
# Beyond lease + sweep: the new worker's start-up is already behind it, so this covers
# the claim, the job itself and the polling of this test on a busy machine.
SLACK_SECONDS = 2.5


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("timing", TIMINGS, ids=["short", "defaults"])
def test_a_job_held_by_a_killed_worker_is_finished_by_another_within_seconds(
    pg_url: str,
    redis_url: str,
    tmp_path: Path,
    client_for: Callable[..., TestClient],
    timing: tuple[float, float] | None,
) -> None:
    defaults = PipelineSettings()
    lease, sweep = timing or (defaults.lease_seconds, defaults.sweep_interval_seconds)
    pipeline = {"lease_seconds": lease, "sweep_interval_seconds": sweep} if timing else {}
    env = service_env(pg_url, redis_url, **pipeline)
    worker = ["workers.main", "worker", "--concurrency", "1"]
    first = Command(worker, env, tmp_path / "first.log")
    others: list[Command] = []
    # The incident stage waits for the correlation lock, which the test holds: the first
    # worker is deterministically in the middle of the job when it is killed.
    lock = psycopg.connect(pg_url, autocommit=True)
    try:
        lock.execute("SELECT pg_advisory_lock(%s)", (int(LockKey.CORRELATION),))
        wait_for(lambda: "ready" in first.output(), 30, "the first worker to start")
        client = client_for(pg_url, broker_url=redis_url)
        body = am_payload([am_alert({"alertname": "HeldByAKilledWorker", "service": "api"})])
        response = client.post(
            "/api/v1/alerts/alertmanager", content=orjson.dumps(body), headers=AUTH
        )
        assert response.status_code == 200, response.text

        engine = create_db_engine(pg_url)
        sessions = make_session_factory(engine)

        def waiting_for_the_lock() -> bool:
            with lock.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                row = cur.fetchone()
            return bool(row and row[0])

        wait_for(waiting_for_the_lock, 30, "the first worker to run the job")
        [job] = session_rows(sessions)
        assert (job["status"], job["attempts"]) == ("running", 1)
        first_token = job["claim_token"]

        others.append(Command(worker, env, tmp_path / "second.log"))
        others.append(Command(["workers.main", "beat"], env, tmp_path / "beat.log", tmp_path))
        wait_for(lambda: "ready" in others[0].output(), 30, "the second worker to start")
        # Still renewed while the first worker lives: nobody else has taken it.
        assert session_rows(sessions)[0]["claim_token"] == first_token

        first.kill_group()
        killed_at = time.monotonic()
        lock.execute("SELECT pg_advisory_unlock(%s)", (int(LockKey.CORRELATION),))

        def done() -> bool:
            return session_rows(sessions)[0]["status"] == "done"

        try:
            wait_for(done, lease + sweep + 15, "another worker to finish the job")
        except AssertionError:
            logs = "\n".join(c.output()[-2000:] for c in others)
            raise AssertionError(f"{session_rows(sessions)}\n{logs}") from None
        delay = time.monotonic() - killed_at
        print(f"job finished {delay:.1f} s after its worker was killed (lease {lease} s)")
        assert delay < lease + sweep + SLACK_SECONDS
        [job] = session_rows(sessions)
        assert job["claim_token"] != first_token and job["attempts"] == 2
        with engine.connect() as conn:
            members = conn.execute(sa.text("SELECT count(*) FROM incident_alerts")).scalar()
        assert members == 1
        engine.dispose()
    finally:
        lock.close()
        first.stop()
        for command in others:
            command.stop()


def session_rows(sessions: sessionmaker[Session]) -> list[dict[str, object]]:
    """Every pipeline job, in id order."""
    with session_scope(sessions) as session:
        return [dict(r) for r in session.execute(sa.select(JOBS).order_by(JOBS.c.id)).mappings()]
