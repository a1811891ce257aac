"""A run claims at most `max_jobs_per_run` jobs, whatever plan PostgreSQL picks."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import sqlalchemy as sa

from incidents.config import PipelineSettings
from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.models import PipelineJob
from incidents.pipeline.lease import claim

# With these, PostgreSQL runs `id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` as a
# semi-join that rescans the subquery for every outer row. A busy table's statistics can
# lead the planner there by itself: a full test run did, and a run took every waiting job.
RESCANNING = (
    "-c enable_hashjoin=off -c enable_mergejoin=off -c enable_material=off "
    "-c enable_sort=off -c enable_hashagg=off"
)


@pytest.mark.postgres
def test_a_claim_takes_no_more_than_its_share_under_a_rescanning_plan(pg_url: str) -> None:
    engine = create_db_engine(f"{pg_url}?options={quote(RESCANNING)}")
    sessions = make_session_factory(engine)
    try:
        with sessions.begin() as session:
            jobs = [PipelineJob(created_at=utcnow(), fingerprints=[f"f{i}"]) for i in range(6)]
            session.add_all(jobs)
        ids = [int(j.id or 0) for j in jobs]
        held = claim(sessions, ids[0], PipelineSettings(max_jobs_per_run=3))
        assert held is not None
        assert held.ids == (ids[0], ids[1], ids[2])
        with engine.connect() as conn:
            running = conn.execute(
                sa.text("SELECT id FROM pipeline_jobs WHERE status = 'running' ORDER BY id")
            ).scalars()
            assert list(running) == ids[:3]
    finally:
        engine.dispose()
