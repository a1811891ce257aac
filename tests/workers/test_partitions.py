"""The correlation lock is partitioned by graph component: unrelated alerts correlate in
parallel, related ones queue, and a graph replacement waits for running jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import save_graph
from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.ingest.fingerprint import label_fingerprint
from incidents.locks import LockKey, slot_of
from incidents.models import PipelineJob
from incidents.pipeline.runner import run_job
from tests.conftest import ROOT, make_settings
from tests.factories import stored_alert

pytestmark = pytest.mark.postgres

EXAMPLE_GRAPH = ServiceGraph.from_file(ROOT / "examples" / "services.yaml")


@pytest.fixture
def sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(pg_url)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        save_graph(session, EXAMPLE_GRAPH)
    yield factory
    engine.dispose()


def queue(sessions: sessionmaker[Session], service: str, name: str) -> int:
    """Store one firing alert on the service and its pipeline job; return the job id."""
    now = utcnow()
    labels = {"alertname": name, "service": service}
    with sessions.begin() as session:
        session.add(
            stored_alert(
                labels,
                service=service,
                severity="P2",
                starts_at=now - timedelta(seconds=5),
                received=now,
            )
        )
        job = PipelineJob(created_at=now, fingerprints=[label_fingerprint(labels)])
        session.add(job)
        session.flush()
        assert job.id is not None
        return job.id


def in_thread(fn: object) -> tuple[threading.Thread, list[str]]:
    out: list[str] = []
    thread = threading.Thread(target=lambda: out.append(fn()))  # type: ignore[operator]
    thread.start()
    return thread, out


def hold_slot(pg_url: str, partition: str) -> psycopg.Connection[object]:
    """Another session holding a partition's slot, as a worker in the middle of a job."""
    conn: psycopg.Connection[object] = psycopg.connect(
        pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (int(LockKey.PARTITION), slot_of(partition)))
    return conn


def incident_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(sa.text("SELECT count(*) FROM incidents")) or 0)


def test_unrelated_alerts_correlate_while_a_partition_is_busy(
    pg_url: str, sessions: sessionmaker[Session]
) -> None:
    settings = make_settings(pg_url, pipeline={"max_jobs_per_run": 1})
    example = EXAMPLE_GRAPH.partition_of("database-postgres")
    assert EXAMPLE_GRAPH.partition_of("billing") != example  # not in the graph: its own
    related = queue(sessions, "user-service", "LoginErrors")
    unrelated = queue(sessions, "billing", "InvoicesStuck")
    holder = hold_slot(pg_url, example)
    try:
        blocked, blocked_out = in_thread(lambda: run_job(sessions, related, settings))
        free, free_out = in_thread(lambda: run_job(sessions, unrelated, settings))
        free.join(20)
        # The unrelated job finished while the example graph's partition was held...
        assert free_out == ["done"]
        assert incident_count(sessions) == 1
        time.sleep(0.5)
        # ...and the related one is still waiting for it.
        assert blocked.is_alive() and blocked_out == []
    finally:
        holder.close()  # a worker finishing its job releases the slot
    blocked.join(20)
    assert blocked_out == ["done"]
    assert incident_count(sessions) == 2


def test_a_graph_replacement_waits_for_running_correlation(
    pg_url: str, sessions: sessionmaker[Session]
) -> None:
    settings = make_settings(pg_url, pipeline={"max_jobs_per_run": 1})
    job = queue(sessions, "user-service", "LoginErrors")
    holder = hold_slot(pg_url, EXAMPLE_GRAPH.partition_of("user-service"))
    try:
        running, running_out = in_thread(lambda: run_job(sessions, job, settings))
        time.sleep(0.5)  # the job holds the graph lock shared and waits for its slot

        def replace() -> str:
            with sessions.begin() as session:
                save_graph(session, ServiceGraph.empty())
            return "replaced"

        replacing, replaced = in_thread(replace)
        time.sleep(0.5)
        assert running.is_alive() and replacing.is_alive() and replaced == []
    finally:
        holder.close()
    running.join(20)
    replacing.join(20)
    assert running_out == ["done"] and replaced == ["replaced"]


def queue_alert(sessions: sessionmaker[Session], service: str, severity: str, cluster: str) -> int:
    """One firing alert with a cluster label, and its pipeline job; return the job id."""
    now = utcnow()
    labels = {"alertname": f"Trouble-{severity}", "service": service, "cluster": cluster}
    with sessions.begin() as session:
        session.add(
            stored_alert(
                labels,
                service=service,
                severity=severity,
                starts_at=now - timedelta(seconds=5),
                received=now,
            )
        )
        job = PipelineJob(created_at=now, fingerprints=[label_fingerprint(labels)])
        session.add(job)
        session.flush()
        assert job.id is not None
        return job.id


def test_muted_alerts_whose_inhibitors_sit_in_each_others_partitions_do_not_deadlock(
    pg_url: str, sessions: sessionmaker[Session]
) -> None:
    # A rule across services: a P0 mutes the P2s of its cluster wherever they stand.
    rule = {"source_matchers": ['__severity__="P0"'], "target_matchers": ['__severity__="P2"']}
    settings = make_settings(
        pg_url,
        pipeline={"max_jobs_per_run": 1},
        correlation={"inhibit_rules": [{**rule, "equal": ["cluster"]}]},
    )
    example, billing = EXAMPLE_GRAPH.partition_of("user-service"), "billing"
    assert slot_of(example) != slot_of(billing)
    # Each part of the graph has a P0 in its incident, inhibiting a P2 in the other part.
    for service, cluster in (("billing", "east"), ("database-postgres", "west")):
        assert run_job(sessions, queue_alert(sessions, service, "P0", cluster), settings) == "done"
    west = queue_alert(sessions, "billing", "P2", "west")  # muted by database-postgres
    east = queue_alert(sessions, "user-service", "P2", "east")  # muted by billing
    # Both jobs wait for their first slot, then start at the same moment.
    holder = hold_slot(pg_url, example)
    holder.execute("SELECT pg_advisory_lock(%s, %s)", (int(LockKey.PARTITION), slot_of(billing)))
    try:
        first, first_out = in_thread(lambda: run_job(sessions, west, settings))
        second, second_out = in_thread(lambda: run_job(sessions, east, settings))
        time.sleep(0.5)
        assert first.is_alive() and second.is_alive()
    finally:
        holder.close()
    first.join(30)
    second.join(30)
    # Neither was aborted as a deadlock (and left for a retry).
    assert (first_out, second_out) == (["done"], ["done"])
    with sessions() as session:
        members = session.execute(
            sa.text(
                "SELECT a.service, a.status, i.services FROM incident_alerts a "
                "JOIN incidents i ON i.id = a.incident_id ORDER BY a.id"
            )
        ).all()
    # Whichever went first, each muted P2 is a member of its inhibitor's incident.
    assert sorted((service, status, services) for service, status, services in members) == [
        ("billing", "firing", ["billing"]),
        ("billing", "muted", ["database-postgres"]),
        ("database-postgres", "firing", ["database-postgres"]),
        ("user-service", "muted", ["billing"]),
    ]
