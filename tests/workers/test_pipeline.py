"""The hand-off from ingestion to the pipeline: embedded worker, Celery worker, outbox sweep."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.config import PipelineSettings, Settings
from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.models import PipelineJob
from incidents.pipeline.runner import due_jobs, run_job
from tests.conftest import AUTH, ROOT
from tests.factories import am_alert, am_payload


def _jobs(db_url: str) -> list[tuple[int, str, list[str]]]:
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        rows = session.scalars(sa.select(PipelineJob).order_by(sa.text("id"))).all()
        out = [(int(r.id or 0), r.status, list(r.fingerprints)) for r in rows]
    engine.dispose()
    return out


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _post(client: TestClient, name: str) -> str:
    body = am_payload([am_alert({"alertname": name, "service": "api-gateway"})])
    response = client.post("/api/v1/alerts/alertmanager", content=orjson.dumps(body), headers=AUTH)
    assert response.status_code == 200, response.text
    return str(body["alerts"][0]["fingerprint"])


def test_embedded_worker_runs_the_job_after_the_commit(client: TestClient, db_url: str) -> None:
    fingerprint = _post(client, "Embedded")
    _wait_for(lambda: [j[1] for j in _jobs(db_url)] == ["done"], 10, "the job to run")
    [(_, _, fingerprints)] = _jobs(db_url)
    assert fingerprints == [fingerprint]


def test_sweeper_runs_a_job_whose_hand_off_was_lost(db_url: str) -> None:
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    settings = Settings(
        database_url=db_url,
        pipeline=PipelineSettings(sweep_interval_seconds=1, lease_seconds=5),
    )
    with sessions.begin() as session:
        session.add(PipelineJob(created_at=utcnow() - timedelta(seconds=30), fingerprints=["lost"]))
        session.add(
            PipelineJob(
                created_at=utcnow() - timedelta(minutes=5),
                fingerprints=["crashed"],
                status="running",
                claimed_at=utcnow() - timedelta(minutes=4),
                lease_until=utcnow() - timedelta(minutes=3),
                claim_token="dead-worker",
                attempts=1,
            )
        )
        session.add(PipelineJob(created_at=utcnow(), fingerprints=["fresh"]))
    due = due_jobs(sessions, settings.pipeline)
    assert len(due) == 2  # the fresh one is still within its normal hand-off time
    # The first run takes the other claimable jobs with it (the lapsed one included).
    assert [run_job(sessions, job_id, settings) for job_id in due] == ["done", "skipped"]
    assert {status for _, status, _ in _jobs(db_url)} == {"done"}
    # A job already done is not run twice when it is handed out again.
    assert run_job(sessions, due[0], settings) == "skipped"
    engine.dispose()


def test_a_failing_stage_leaves_the_job_for_a_retry(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    sessions = make_session_factory(engine)
    settings = Settings(database_url=sqlite_url, pipeline=PipelineSettings(max_attempts=2))
    with sessions.begin() as session:
        job = PipelineJob(created_at=utcnow(), fingerprints=[])
        session.add(job)
    assert job.id is not None

    class Broken:
        name = "broken"

        def run(self, ctx: object) -> None:
            raise RuntimeError("stage exploded")

    assert run_job(sessions, job.id, settings, [Broken()]) == "pending"
    assert run_job(sessions, job.id, settings, [Broken()]) == "failed"
    with sessions() as session:
        stored = session.get(PipelineJob, job.id)
        assert stored is not None and stored.error == "RuntimeError: stage exploded"
    engine.dispose()


@pytest.fixture
def celery_worker(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real Celery worker process consuming from the real Redis."""
    env = {
        **os.environ,
        "INCIDENTS_DATABASE_URL": pg_url,
        "INCIDENTS_BROKER_URL": redis_url,
        "INCIDENTS_CONFIG": "",
        "INCIDENTS_LOG_JSON": "false",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "incidents.cli", "worker", "--concurrency", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield {"log": str(log_path), "broker": redis_url}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.postgres
@pytest.mark.redis
def test_celery_worker_on_redis_runs_the_pipeline(
    pg_url: str, celery_worker: dict[str, str], client_for: Callable[..., TestClient]
) -> None:
    client = client_for(pg_url, broker_url=celery_worker["broker"])
    ready = client.get("/readyz", headers=AUTH).json()
    assert ready["checks"]["broker"]["kind"] == "redis"
    assert ready["checks"]["broker"]["status"] == "ok"
    fingerprints = [_post(client, f"Celery{i}") for i in range(3)]

    def all_done() -> bool:
        jobs = _jobs(pg_url)
        return len(jobs) == 3 and all(status == "done" for _, status, _ in jobs)

    try:
        _wait_for(all_done, 60, "the Celery worker to run three jobs")
    except AssertionError:
        log = Path(celery_worker["log"]).read_text(errors="replace")[-3000:]
        raise AssertionError(f"jobs: {_jobs(pg_url)}\nworker log:\n{log}") from None
    assert sorted(fp for _, _, fps in _jobs(pg_url) for fp in fps) == sorted(fingerprints)
    assert "run_pipeline_job" in Path(celery_worker["log"]).read_text(errors="replace")


def test_a_run_takes_the_other_waiting_jobs_with_it(db_url: str) -> None:
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    settings = Settings(database_url=db_url, pipeline=PipelineSettings(max_jobs_per_run=3))
    with sessions.begin() as session:
        jobs = [PipelineJob(created_at=utcnow(), fingerprints=[f"f{i}"]) for i in range(5)]
        session.add_all(jobs)
    ids = [int(j.id or 0) for j in jobs]
    assert run_job(sessions, ids[2], settings) == "done"
    statuses = {job_id: status for job_id, status, _ in _jobs(db_url)}
    # The job asked for, and the two oldest waiting ones with it.
    assert [statuses[i] for i in ids] == ["done", "done", "done", "pending", "pending"]
    assert run_job(sessions, ids[0], settings) == "skipped"
    assert run_job(sessions, ids[3], settings) == "done"
    assert {status for _, status, _ in _jobs(db_url)} == {"done"}
    engine.dispose()
