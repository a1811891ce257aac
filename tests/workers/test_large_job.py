"""A storm's pipeline job: more fingerprints than one statement can bind still runs."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from incidents.config import Settings
from incidents.db import create_db_engine, make_session_factory, stored_id, utcnow
from incidents.models import PipelineJob
from incidents.pipeline.runner import run_job
from tests.factories import stored_alert

T0 = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


def test_job_beyond_the_bind_parameter_limit_runs(db_url: str) -> None:
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    settings = Settings(database_url=db_url)
    real = [
        stored_alert(
            {"alertname": "Storm", "service": "api-gateway", "n": str(i)},
            service="api-gateway",
            severity="P1",
            starts_at=T0,
            received=T0,
        )
        for i in range(3)
    ]
    # PostgreSQL binds at most 65,535 parameters per statement; the stages list the
    # job's fingerprints in IN clauses. Only three of them have alert rows, so the
    # test stays fast while the statements are as large as a storm's.
    others = [f"{i:016x}" for i in range(70_000)]
    with sessions.begin() as session:
        session.add_all(real)
        job = PipelineJob(created_at=utcnow(), fingerprints=others + [a.fingerprint for a in real])
        session.add(job)
    assert run_job(sessions, stored_id(job), settings) == "done"
    with engine.connect() as conn:
        linked = conn.execute(sa.text("SELECT count(*) FROM incident_alerts")).scalar_one()
    engine.dispose()
    assert linked == 3
