"""Incident, pipeline and muted-alert figures in /metrics, read from the database.

Values are checked through GET /metrics after real ingests, on SQLite and PostgreSQL; on
PostgreSQL the plans of the queries behind them are checked at 100,000 alerts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from incidents.api.queries.operations import metric_queries
from incidents.db import create_db_engine, utcnow
from tests.api.test_incidents import Pipeline, alert, recent
from tests.api.test_services_silences import silence
from tests.factories import am_alert


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def pipe(client: TestClient, db_url: str) -> Iterator[Pipeline]:
    p = Pipeline(client, db_url)
    yield p
    p.close()


def test_metrics_report_incidents_lag_and_muted_alerts_from_the_database(
    pipe: Pipeline,
) -> None:
    empty = scrape(pipe.client)
    assert value(empty, "incidents_open", severity="P0") == 0
    assert value(empty, "incidents_opened_total") == 0

    started = recent(20)
    pipe.post(alert("payments", "PaymentsDown", started, "P0"))
    pipe.post(alert("search", "SearchSlow", recent(5), "P2"))
    assert silence(pipe.client, matchers='alertname="NoisyDisk"').status_code == 201
    pipe.post(alert("storage", "NoisyDisk", recent(4)))  # silenced
    pipe.post(alert("payments", "PaymentsRetries", recent(3), "P3"))  # inhibited by the P0
    watchdog = {"alertname": "Watchdog", "severity": "none"}
    pipe.post(am_alert(watchdog, starts_at=recent(30)))  # ignored
    pipe.post(alert("search", "SearchSlow", recent(5), "P2", resolved_at=recent(1)))

    samples = scrape(pipe.client)
    assert value(samples, "incidents_open", severity="P0") == 1
    assert value(samples, "incidents_open", severity="P1") == 0
    assert value(samples, "incidents_open", severity="P2") == 0
    assert value(samples, "incidents_open", severity="P3") == 0
    # The P0 opened when its first alert started, 20 minutes ago.
    age = value(samples, "incidents_open_oldest_age_seconds", severity="P0")
    expected = (utcnow() - started).total_seconds()
    assert expected - 5 <= age <= expected + 1
    assert value(samples, "incidents_open_oldest_age_seconds", severity="P2") == 0
    assert value(samples, "incidents_opened_total") == 2
    assert value(samples, "incidents_resolved_total") == 1
    assert value(samples, "incidents_reopened_total") == 0
    assert value(samples, "incidents_alerts_muted", reason="silenced") == 1
    assert value(samples, "incidents_alerts_muted", reason="inhibited") == 1
    assert value(samples, "incidents_alerts_muted", reason="ignored") == 1
    assert value(samples, "incidents_pipeline_lag_seconds") == 0

    # Muted counts are of firing alerts only.
    pipe.post(am_alert(watchdog, status="resolved", starts_at=recent(30), ends_at=recent(0.5)))
    pipe.post(alert("storage", "NoisyDisk", recent(4), resolved_at=recent(0.5)))
    # The search alert fires again soon after its incident resolved: reopened, not opened.
    pipe.post(alert("search", "SearchSlow", recent(0.5), "P2"))
    samples = scrape(pipe.client)
    assert value(samples, "incidents_alerts_muted", reason="ignored") == 0
    assert value(samples, "incidents_alerts_muted", reason="silenced") == 0
    assert value(samples, "incidents_alerts_muted", reason="inhibited") == 1
    assert value(samples, "incidents_reopened_total") == 1
    assert value(samples, "incidents_opened_total") == 2
    assert value(samples, "incidents_open", severity="P2") == 1


def test_pipeline_lag_is_the_age_of_the_oldest_job_not_done(pipe: Pipeline, db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        with engine.begin() as conn:
            # As a job left pending by a lost hand-off, and one whose worker is still on it.
            conn.execute(
                sa.text(
                    "INSERT INTO pipeline_jobs (created_at, fingerprints, status, attempts)"
                    " VALUES (:a, '[]', 'pending', 0), (:b, '[]', 'running', 1),"
                    " (:c, '[]', 'done', 1)"
                ),
                {
                    "a": utcnow() - timedelta(seconds=90),
                    "b": utcnow() - timedelta(seconds=200),
                    "c": utcnow() - timedelta(hours=5),
                },
            )
        lag = value(scrape(pipe.client), "incidents_pipeline_lag_seconds")
        assert 200 <= lag < 210
    finally:
        engine.dispose()


# -- the query plans at 100,000 alerts ---------------------------------------------------------

_BULK = [
    # 100,000 alerts: a tenth resolved, 50 ignored.
    """INSERT INTO alerts (fingerprint, source, status, labels, annotations, starts_at,
        state_at, severity, service, first_received, last_received, receive_count, extra,
        ignored_by)
    SELECT 'fp' || i, 'alertmanager', CASE WHEN i % 10 = 0 THEN 'resolved' ELSE 'firing' END,
        jsonb_build_object('alertname', 'A' || (i % 500), 'service', 's' || (i % 2000)),
        '{}'::jsonb, now(), now(), 'P2', 's' || (i % 2000), now(), now(), 1, '{}'::jsonb,
        CASE WHEN i % 2000 = 1 THEN 'alertname="Watchdog"' END
    FROM generate_series(1, 100000) AS i""",
    # A pipeline state for each, 100 silenced and 100 inhibited.
    """INSERT INTO alert_states (fingerprint, last_status, last_state_at, transitions,
        flapping, silenced_by, inhibited_by, updated_at)
    SELECT 'fp' || i, 'firing', now(), '[]'::jsonb, false,
        CASE WHEN i % 1000 = 3 THEN '["s1"]'::jsonb ELSE '[]'::jsonb END,
        CASE WHEN i % 1000 = 7 THEN '["fp1"]'::jsonb ELSE '[]'::jsonb END, now()
    FROM generate_series(1, 100000) AS i""",
    # 20,000 incidents, 20 of them open; 100,000 finished jobs, 3 waiting.
    """INSERT INTO incidents (status, severity, title, opened_at, updated_at, first_alert_at,
        last_alert_at, services, root_cause_candidates, blast_radius, flapping, service_stats)
    SELECT CASE WHEN i % 1000 = 0 THEN 'open' ELSE 'resolved' END, 'P' || (i % 4), 't',
        now(), now(), now(), now(), '[]'::jsonb, '[]'::jsonb, '[]'::jsonb, false, '{}'::jsonb
    FROM generate_series(1, 20000) AS i""",
    """INSERT INTO pipeline_jobs (created_at, fingerprints, status, attempts)
    SELECT now(), '[]'::jsonb, CASE WHEN i % 40000 = 0 THEN 'pending' ELSE 'done' END, 1
    FROM generate_series(1, 100000) AS i""",
    "ANALYZE",
]


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.postgres
def test_metric_queries_use_indexes_at_100k_alerts(pg_url: str) -> None:
    engine = create_db_engine(pg_url)
    try:
        with engine.begin() as conn:
            for statement in _BULK:
                conn.execute(sa.text(statement))
        with engine.connect() as conn:
            for name, query in metric_queries("postgresql").items():
                compiled = query.compile(
                    dialect=conn.dialect, compile_kwargs={"literal_binds": True}
                )
                raw = conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {compiled}")).scalar_one()
                plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
                scans = [
                    (node["Node Type"], node.get("Relation Name"))
                    for node in _plan_nodes(plan)
                    if node["Node Type"] == "Seq Scan"
                    and node.get("Relation Name") != "incident_totals"  # three rows
                ]
                assert scans == [], f"{name} scans a whole table: {scans}\n{compiled}"
                # And what they read matches the data.
                assert conn.execute(query).all() is not None
    finally:
        engine.dispose()


def test_upgrading_an_existing_database_starts_the_totals_from_its_timeline(
    tmp_path: Any,
) -> None:
    from incidents.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0004")
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO incidents (id, status, severity, title, opened_at, updated_at,"
                    " first_alert_at, last_alert_at, services, root_cause_candidates,"
                    " blast_radius, flapping) VALUES (1, 'resolved', 'P1', 't', :at, :at, :at,"
                    " :at, '[]', '[]', '[]', 0)"
                ),
                {"at": utcnow()},
            )
            for kind in ("opened", "opened", "resolved", "alert_joined", "reopened"):
                conn.execute(
                    sa.text(
                        "INSERT INTO timeline (incident_id, at, kind, actor, message, pages, data)"
                        " VALUES (1, :at, :kind, 'system', 'm', 1, '{}')"
                    ),
                    {"at": utcnow(), "kind": kind},
                )
        upgrade(url)
        with engine.connect() as conn:
            totals = dict(conn.execute(sa.text("SELECT event, count FROM incident_totals")).all())
            kept = conn.execute(sa.text("SELECT count(*) FROM timeline")).scalar_one()
        assert kept == 5
        assert totals == {"opened": 2, "reopened": 1, "resolved": 1}
    finally:
        engine.dispose()
