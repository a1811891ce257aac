"""The upkeep closes quiet flapping incidents in bounded batches, with a fixed number of
statements, under the locks of their own graph partitions only: jobs elsewhere in the
graph keep correlating while it works."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import current_graph, save_graph
from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.locks import LockKey, slot_of
from incidents.models import ALERTS, INCIDENTS, LINKS, STATES
from incidents.pipeline.maintenance import maintain
from incidents.pipeline.runner import run_job
from incidents.pipeline.settling import FLAP_BATCH
from tests.conftest import make_settings
from tests.workers.test_partitions import queue

# Two components: what happens to one never waits for the other.
TWO_PARTS = ServiceGraph.from_document(
    {
        "services": [
            {"name": "shop-api", "depends_on": ["shop-db"]},
            {"name": "shop-db"},
            {"name": "mail-api", "depends_on": ["mail-queue"]},
            {"name": "mail-queue"},
        ]
    }
)


def add_flapping(
    sessions: sessionmaker[Session], count: int, service: str, now: datetime, first: int = 1
) -> None:
    """Open flapping incidents on the service, each with 3 resolved members whose alerts
    last changed state ten minutes ago: quiet for any flap window up to that."""
    quiet = now - timedelta(minutes=10)
    ids = range(first, first + count)
    fingerprints = [(i, f"flap{i}-{j}") for i in ids for j in range(3)]
    with sessions.begin() as session:
        session.execute(
            sa.insert(INCIDENTS),
            [
                {
                    "id": i,
                    "status": "open",
                    "severity": "P2",
                    "title": f"flapping {i}",
                    "opened_at": quiet,
                    "updated_at": quiet,
                    "first_alert_at": quiet,
                    "last_alert_at": quiet,
                    "services": [service],
                    "root_cause_candidates": [],
                    "blast_radius": [],
                    "flapping": True,
                }
                for i in ids
            ],
        )
        session.execute(
            sa.insert(ALERTS),
            [
                {
                    "fingerprint": fp,
                    "labels": {"alertname": "Flaps", "service": service, "n": fp},
                    "annotations": {},
                    "service": service,
                    "severity": "P2",
                    "status": "resolved",
                    "starts_at": quiet - timedelta(minutes=5),
                    "ends_at": quiet,
                    "state_at": quiet,
                    "first_received": quiet,
                    "last_received": quiet,
                    "receive_count": 1,
                    "extra": {},
                    "source": "test",
                }
                for _, fp in fingerprints
            ],
        )
        session.execute(
            sa.insert(LINKS),
            [
                {
                    "incident_id": i,
                    "fingerprint": fp,
                    "service": service,
                    "severity": "P2",
                    "starts_at": quiet - timedelta(minutes=5),
                    "status": "resolved",
                    "joined_at": quiet,
                    "joined_because": {},
                }
                for i, fp in fingerprints
            ],
        )
        session.execute(
            sa.insert(STATES),
            [
                {
                    "fingerprint": fp,
                    "last_status": "resolved",
                    "last_state_at": quiet,
                    "updated_at": quiet,
                    "flapping": True,
                    "transitions": [],
                    "silenced_by": [],
                    "inhibited_by": [],
                }
                for _, fp in fingerprints
            ],
        )
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                sa.text("SELECT setval('incidents_id_seq', (SELECT max(id) FROM incidents))")
            )


def open_count(sessions: sessionmaker[Session], where: str = "true") -> int:
    with sessions() as session:
        return int(
            session.scalar(
                sa.text(f"SELECT count(*) FROM incidents WHERE status = 'open' AND {where}")
            )
            or 0
        )


def statements_of(engine: Engine, call: Any) -> int:
    """How many statements the call sends to the database."""
    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(args[2])

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    return len(sent)


@pytest.mark.postgres
def test_an_upkeep_closes_a_batch_in_a_fixed_number_of_statements(pg_url: str) -> None:
    settings = make_settings(pg_url, correlation={"flap_window_seconds": 60})
    engine = create_db_engine(pg_url)
    sessions = make_session_factory(engine)
    now = utcnow()
    with sessions.begin() as session:
        save_graph(session, TWO_PARTS)
        current_graph(session)  # read once per process, as by any first upkeep
    add_flapping(sessions, 5, "shop-api", now)
    few = statements_of(engine, lambda: maintain(sessions, settings, now=now))
    assert open_count(sessions) == 0
    add_flapping(sessions, FLAP_BATCH + 50, "shop-api", now, first=100)
    many = statements_of(engine, lambda: maintain(sessions, settings, now=now))
    # One batch closed, with as many statements as five incidents took; the rest wait.
    assert open_count(sessions) == 50
    assert many == few
    maintain(sessions, settings, now=now)
    assert open_count(sessions) == 0
    with sessions() as session:
        resolved = session.execute(
            sa.text(
                "SELECT incident_id, count(*) FROM timeline WHERE kind = 'resolved' "
                "GROUP BY incident_id"
            )
        ).all()
        assert len(resolved) == 5 + FLAP_BATCH + 50 and {n for _, n in resolved} == {1}
        # Their alerts no longer flap: firing again would page again.
        assert not session.scalar(sa.text("SELECT count(*) FROM alert_states WHERE flapping"))
        [(status, ended)] = session.execute(
            sa.text("SELECT status, resolved_at FROM incidents WHERE id = 1")
        ).all()
        assert status == "resolved" and ended is not None
    engine.dispose()


@pytest.mark.postgres
def test_jobs_elsewhere_in_the_graph_correlate_while_the_upkeep_settles_flapping(
    pg_url: str,
) -> None:
    settings = make_settings(
        pg_url, correlation={"flap_window_seconds": 60}, pipeline={"max_jobs_per_run": 1}
    )
    engine = create_db_engine(pg_url)
    sessions = make_session_factory(engine)
    try:
        with sessions.begin() as session:
            save_graph(session, TWO_PARTS)
        add_flapping(sessions, 2000, "shop-api", utcnow())
        upkeeps: list[float] = []

        def upkeep() -> None:
            while open_count(sessions, "flapping") and len(upkeeps) < 40:
                started = time.perf_counter()
                maintain(sessions, settings)  # its locks last as long as this call
                upkeeps.append(time.perf_counter() - started)

        thread = threading.Thread(target=upkeep)
        thread.start()
        latencies: list[float] = []
        while thread.is_alive():
            job = queue(sessions, "mail-api", f"QueueBacklog{len(latencies)}")
            started = time.perf_counter()
            assert run_job(sessions, job, settings) == "done"
            latencies.append(time.perf_counter() - started)
        thread.join()
        assert open_count(sessions, "flapping") == 0
        assert open_count(sessions) == 1  # the mail queue's, which every job joined
        assert len(upkeeps) >= 2000 // FLAP_BATCH and len(latencies) >= 3
        assert max(upkeeps) < 2.0, upkeeps
        assert max(latencies) < 1.0, latencies
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_an_incident_that_fires_again_before_the_upkeep_locks_it_stays_open(
    pg_url: str,
) -> None:
    settings = make_settings(pg_url, correlation={"flap_window_seconds": 60})
    engine = create_db_engine(pg_url)
    sessions = make_session_factory(engine)
    try:
        with sessions.begin() as session:
            save_graph(session, TWO_PARTS)
        add_flapping(sessions, 2, "shop-api", utcnow())
        # A worker in the middle of a job on the shop's partition...
        holder: psycopg.Connection[object] = psycopg.connect(
            pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )
        try:
            holder.execute(
                "SELECT pg_advisory_lock(%s, %s)",
                (int(LockKey.PARTITION), slot_of(TWO_PARTS.partition_of("shop-api"))),
            )
            thread = threading.Thread(target=lambda: maintain(sessions, settings))
            thread.start()
            time.sleep(0.5)
            assert thread.is_alive()  # it picked both, and waits for the partition
            # ...whose job finds a member of incident 1 firing again.
            holder.execute(
                "UPDATE incident_alerts SET status = 'firing' WHERE fingerprint = 'flap1-0'"
            )
            holder.execute(
                "UPDATE alert_states SET last_state_at = now() WHERE fingerprint = 'flap1-0'"
            )
        finally:
            holder.close()
        thread.join(20)
        with sessions() as session:
            rows = {i: st for i, st in session.execute(sa.text("SELECT id, status FROM incidents"))}
        assert rows == {1: "open", 2: "resolved"}
    finally:
        engine.dispose()
