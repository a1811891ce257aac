"""The storm cap holds across workers: two jobs on unrelated partitions, running at once,
share one minute's budget of opening pages and write one storm page between them."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.ingest.fingerprint import label_fingerprint
from incidents.models import PipelineJob
from incidents.pipeline.runner import run_job
from tests.conftest import make_settings
from tests.factories import stored_alert

pytestmark = pytest.mark.postgres

CAP = 10


def hold_the_totals(pg_url: str) -> psycopg.Connection[object]:
    """Another transaction holding the row every opening job updates last (the count of
    opened incidents; the tables were emptied, so it inserts it): jobs that get there have
    spent from the budget and wait there, uncommitted, until it ends. The worst
    interleaving, every time."""
    conn: psycopg.Connection[object] = psycopg.connect(
        pg_url.replace("postgresql+psycopg://", "postgresql://")
    )
    conn.execute("INSERT INTO incident_totals (event, count) VALUES ('opened', 0)")
    return conn


def waiting_on_locks(pg_url: str, count: int) -> bool:
    """Whether `count` sessions of this database wait for a lock (within 30 s)."""
    with psycopg.connect(
        pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] >= count:
                return True
            time.sleep(0.05)
    return False


def queue(sessions: sessionmaker[Session], services: list[str]) -> int:
    """One job of unrelated alerts, one per service (each service its own partition)."""
    now = utcnow()
    fingerprints = []
    with sessions.begin() as session:
        for service in services:
            labels = {"alertname": "Down", "service": service}
            session.add(
                stored_alert(
                    labels,
                    service=service,
                    severity="P1",
                    starts_at=now - timedelta(seconds=5),
                    received=now,
                )
            )
            fingerprints.append(label_fingerprint(labels))
        job = PipelineJob(created_at=now, fingerprints=fingerprints)
        session.add(job)
        session.flush()
        assert job.id is not None
        return job.id


def test_two_workers_on_unrelated_partitions_keep_to_the_storm_cap(pg_url: str) -> None:
    settings = make_settings(
        pg_url,
        correlation={"max_new_incidents_per_minute": CAP},
        pipeline={"max_jobs_per_run": 1},
    )
    engine = create_db_engine(pg_url)
    sessions = make_session_factory(engine)
    try:
        first = queue(sessions, [f"shop-{n}" for n in range(12)])
        second = queue(sessions, [f"mail-{n}" for n in range(12)])
        holder = hold_the_totals(pg_url)
        results: list[str] = []
        workers = [
            threading.Thread(
                target=lambda job=job: results.append(run_job(sessions, job, settings))
            )
            for job in (first, second)
        ]
        try:
            for worker in workers:
                worker.start()
            # Both have opened their incidents and wait, neither committed.
            assert waiting_on_locks(pg_url, 2)
        finally:
            holder.close()
        for worker in workers:
            worker.join(60)
        assert results == ["done", "done"]
        with sessions() as session:
            opened = session.execute(
                sa.text("SELECT pages, count(*) FROM timeline WHERE kind = 'opened' GROUP BY pages")
            ).all()
            storm_pages = session.scalar(
                sa.text("SELECT count(*) FROM timeline WHERE kind = 'storm' AND pages")
            )
        counts = {bool(pages): int(n) for pages, n in opened}
        assert sum(counts.values()) == 24  # every alert opened its incident
        # At most the cap paged one by one (both jobs counting each other's reservation in
        # the same instant can leave one of it unspent), the rest share one storm page.
        assert CAP - 1 <= counts[True] <= CAP, counts
        assert storm_pages == 1
    finally:
        engine.dispose()
