"""With a broker, incidents are opened by a Celery worker, not by the API process that is
scraped: /metrics must still count them, and two API replicas must report the same."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.api.test_incidents import alert, recent
from tests.api.test_metrics import scrape, value
from tests.conftest import AUTH, ROOT
from tests.factories import am_payload


@contextmanager
def celery_worker(db_url: str, broker_url: str, log_path: Path) -> Iterator[None]:
    """A real Celery worker process, started only when the test asks for it."""
    env = {
        **os.environ,
        "INCIDENTS_DATABASE_URL": db_url,
        "INCIDENTS_BROKER_URL": broker_url,
        "INCIDENTS_CONFIG": "",
        "INCIDENTS_LOG_JSON": "false",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "incidents.cli", "worker", "--concurrency", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.postgres
@pytest.mark.redis
def test_two_replicas_report_what_the_worker_did(
    pg_url: str, redis_url: str, client_for: Callable[..., TestClient], tmp_path: Path
) -> None:
    replica_a = client_for(pg_url, broker_url=redis_url)
    replica_b = client_for(pg_url, broker_url=redis_url)
    body = am_payload([alert("payments", "PaymentsDown", recent(12), "P0")])
    response = replica_a.post(
        "/api/v1/alerts/alertmanager", content=orjson.dumps(body), headers=AUTH
    )
    assert response.status_code == 200, response.text

    # No worker yet: the job waits in the outbox, and the lag grows on every replica.
    time.sleep(1.0)
    waiting = scrape(replica_b)
    assert value(waiting, "incidents_pipeline_lag_seconds") >= 1.0
    assert value(waiting, "incidents_opened_total") == 0

    log_path = tmp_path / "worker.log"
    with celery_worker(pg_url, redis_url, log_path):
        deadline = time.monotonic() + 60
        while value(scrape(replica_b), "incidents_opened_total") < 1:
            if time.monotonic() > deadline:
                raise AssertionError(log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.2)

    for replica in (replica_a, replica_b):
        samples = scrape(replica)
        assert value(samples, "incidents_opened_total") == 1
        assert value(samples, "incidents_open", severity="P0") == 1
        assert value(samples, "incidents_open_oldest_age_seconds", severity="P0") >= 12 * 60 - 5
        assert value(samples, "incidents_pipeline_lag_seconds") == 0
