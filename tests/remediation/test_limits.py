"""A playbook never runs more often than its policy allows, even in a storm."""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa

from incidents.db import create_db_engine, make_session_factory, session_scope, utcnow
from incidents.playbooks import store
from incidents.playbooks.catalog import compile_loaded
from incidents.playbooks.document import Playbook
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH
from tests.factories import am_payload

CAPPED = """
id: capped
description: at most five runs an hour, one per incident
triggers: [{event: incident_opened, matchers: ['alertname="Storm"']}]
policy: {max_runs_per_incident: 1, max_runs_per_hour: 5}
steps:
  - name: note
    action: incident.annotate
    params: {message: "hello"}
"""


def _runs(pipe: Pipeline) -> list[tuple[int, str]]:
    with pipe.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT incident_id, trigger FROM playbook_runs")).all()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_a_storm_of_a_thousand_matching_alerts_runs_the_playbook_five_times(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    import orjson

    pipe = playbook_pipe(**{"capped": CAPPED})
    at = recent(1)
    # Services outside the graph: each alert opens an incident of its own.
    alerts = [alert(f"svc-{i}", "Storm", at, "P1") for i in range(1000)]
    for start in range(0, 1000, 250):
        body = orjson.dumps(am_payload(alerts[start : start + 250]))
        response = pipe.client.post("/api/v1/alerts/alertmanager", content=body, headers=AUTH)
        assert response.status_code == 200
    pipe.wait(timeout=120)
    assert len(pipe.incidents(limit=500)) == 500  # a page of the 1000 incidents
    runs = _runs(pipe)
    assert len(runs) == 5
    assert len({incident for incident, _ in runs}) == 5
    with pipe.engine.connect() as conn:
        refused = conn.execute(
            sa.text("SELECT count(*) FROM timeline WHERE message LIKE :m"),
            {"m": "playbook capped was not run: it ran 5 time(s) in the last hour%"},
        ).scalar_one()
    assert refused == 995


def test_concurrent_writers_never_pass_the_hourly_limit(pg_database: str) -> None:
    """Twelve transactions at once, each asking for a run on its own incident: the
    playbook's lock makes the count exact (PostgreSQL; SQLite has one writer anyway)."""
    from tests.conftest import _empty_tables
    from tests.remediation.incident_rows import make_incidents

    _empty_tables(pg_database)
    engine = create_db_engine(pg_database, pool_size=16)
    sessions = make_session_factory(engine)
    try:
        incident_ids = make_incidents(sessions, 12)
        playbook = Playbook.model_validate(
            {
                "id": "race",
                "description": "x",
                "policy": {"max_runs_per_hour": 3, "max_runs_per_incident": 1},
                "steps": [{"name": "n", "action": "incident.annotate", "params": {"message": "x"}}],
            }
        )
        compile_loaded(playbook, "test")
        barrier = threading.Barrier(len(incident_ids))
        made: list[int] = []

        def ask(incident_id: int) -> None:
            barrier.wait()
            with session_scope(sessions) as session:
                now = utcnow()
                if store.refusal(session, playbook, incident_id, now) is None:
                    run_id = store.create_run(
                        session, playbook, incident_id, trigger="test",
                        trigger_key=f"t:{incident_id}", dry_run=False, actor="t", now=now,
                    )  # fmt: skip
                    if run_id is not None:
                        made.append(run_id)

        threads = [threading.Thread(target=ask, args=(i,)) for i in incident_ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(made) == 3
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM playbook_runs")).scalar_one()
        assert count == 3
    finally:
        engine.dispose()
