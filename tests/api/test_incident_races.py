"""Concurrent workers on PostgreSQL: related alerts raced through the stage give one incident."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import save_graph
from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.ingest.fingerprint import label_fingerprint
from incidents.models import PipelineJob
from incidents.pipeline.runner import run_job
from tests.api.incident_pipe import (  # noqa: F401  (re-exported for older imports)
    EXAMPLE_GRAPH,
    SEVERITY_LABEL,
    WEBHOOK,
    Pipeline,
    alert,
    entries,
    kinds,
    recent,
)
from tests.api.test_incidents import CASCADE
from tests.conftest import make_settings
from tests.factories import stored_alert

# -- a cascade from the database up ------------------------------------------------------------


# -- concurrent workers on PostgreSQL ----------------------------------------------------------

INCIDENT_TABLES = (
    "alerts",
    "pipeline_jobs",
    "incidents",
    "incident_services",
    "incident_alerts",
    "timeline",
    "alert_states",
    "notifications",
    "notification_threads",
    "sms_codes",
)


def run_at_once(
    sessions: sessionmaker[Session], job_ids: list[int], settings: Settings
) -> dict[int, str]:
    """Run each job in a thread of its own, all released at the same moment."""
    barrier = threading.Barrier(len(job_ids))
    results: dict[int, str] = {}

    def work(job_id: int) -> None:
        barrier.wait()
        results[job_id] = run_job(sessions, job_id, settings)

    threads = [threading.Thread(target=work, args=(j,)) for j in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.postgres
def test_concurrent_workers_on_related_alerts_open_one_incident(pg_url: str) -> None:
    """Five workers each take one alert of the cascade at the same moment: one incident."""
    # One job per run, so the five runs really race each other in the incident stage.
    settings = make_settings(pg_url, pipeline={"max_jobs_per_run": 1})
    engine = create_db_engine(pg_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        save_graph(session, ServiceGraph.from_file(EXAMPLE_GRAPH))
    try:
        for round_no in range(10):
            with engine.begin() as conn:
                conn.execute(
                    sa.text(f"TRUNCATE {', '.join(INCIDENT_TABLES)} RESTART IDENTITY CASCADE")
                )
            now = utcnow()
            job_ids: list[int] = []
            with sessions.begin() as session:
                for i, (service, name, severity) in enumerate(CASCADE):
                    labels = {"alertname": f"{name}{round_no}", "service": service}
                    starts = now - timedelta(seconds=60 - 5 * i)
                    session.add(
                        stored_alert(
                            labels,
                            service=service,
                            severity=severity,
                            starts_at=starts,
                            received=now,
                        )
                    )
                    job = PipelineJob(created_at=now, fingerprints=[label_fingerprint(labels)])
                    session.add(job)
                    session.flush()
                    assert job.id is not None
                    job_ids.append(job.id)

            results = run_at_once(sessions, job_ids, settings)
            assert sorted(results.values()) == ["done"] * len(job_ids), results

            with engine.connect() as conn:
                incidents = conn.execute(
                    sa.text("SELECT id, status, merged_into FROM incidents ORDER BY id")
                ).all()
                links = conn.execute(sa.text("SELECT incident_id FROM incident_alerts")).all()
            live = [row for row in incidents if row[1] != "merged"]
            assert len(live) == 1, f"round {round_no}: {incidents}"
            assert live[0][1] == "open"
            assert {row[0] for row in links} == {live[0][0]}
            assert len(links) == len(CASCADE)
    finally:
        engine.dispose()
