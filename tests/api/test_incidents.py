"""Alerts become incidents: correlation over the service graph, merge, resolve, read API.

Every test drives the real service: webhook bodies go in over HTTP, the embedded worker
runs the pipeline, and the incidents API is read back. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import save_graph
from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.ingest.fingerprint import label_fingerprint
from incidents.models import PipelineJob
from incidents.pipeline.runner import run_job
from tests.conftest import AUTH, ROOT, make_settings
from tests.factories import am_alert, am_payload, iso, stored_alert

WEBHOOK = "/api/v1/alerts/alertmanager"
EXAMPLE_GRAPH = ROOT / "examples" / "services.yaml"
SEVERITY_LABEL = {"P0": "critical", "P1": "high", "P2": "warning", "P3": "info"}


def recent(minutes_ago: float) -> datetime:
    """A whole-second time this many minutes before now (silences and windows act on now)."""
    return utcnow().replace(microsecond=0) - timedelta(minutes=minutes_ago)


def alert(
    service: str,
    name: str,
    at: datetime,
    severity: str = "P2",
    *,
    resolved_at: datetime | None = None,
    **labels: str,
) -> dict[str, Any]:
    """One Alertmanager alert on a service; resolved when `resolved_at` is given."""
    all_labels = {"alertname": name, "service": service, "severity": SEVERITY_LABEL[severity]}
    all_labels.update(labels)
    if resolved_at is None:
        return am_alert(all_labels, starts_at=at)
    return am_alert(all_labels, status="resolved", starts_at=at, ends_at=resolved_at)


class Pipeline:
    """Posts webhooks, waits for the pipeline to catch up, and reads incidents back."""

    def __init__(self, client: TestClient, db_url: str) -> None:
        self.client = client
        self.engine = create_db_engine(db_url)

    def close(self) -> None:
        self.engine.dispose()

    def load_graph(self, text: str | None = None) -> dict[str, Any]:
        body = EXAMPLE_GRAPH.read_text() if text is None else text
        response = self.client.put(
            "/api/v1/services/graph",
            content=body.encode(),
            headers={**AUTH, "Content-Type": "application/yaml"},
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def post(self, *alerts: dict[str, Any], wait: bool = True) -> list[str]:
        """One webhook request carrying these alerts; returns their fingerprints."""
        response = self.client.post(
            WEBHOOK, content=orjson.dumps(am_payload(list(alerts))), headers=AUTH
        )
        assert response.status_code == 200, response.text
        if wait:
            self.wait()
        return [str(a["fingerprint"]) for a in alerts]

    def wait(self, timeout: float = 10.0) -> None:
        """Until every pipeline job is done; fail at once on a job that raised."""
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.text("SELECT id, status, error FROM pipeline_jobs WHERE status != 'done'")
                ).all()
            errors = [f"job {r[0]} ({r[1]}): {r[2]}" for r in rows if r[2]]
            if errors:
                raise AssertionError("pipeline job failed: " + "; ".join(errors))
            if not rows:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"pipeline jobs still not done after {timeout}s: {rows}")
            time.sleep(0.05)

    def incidents(self, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get(
            "/api/v1/incidents", params={"limit": 500, **params}, headers=AUTH
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def incident(self, incident_id: int) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail

    def alert_row(self, fingerprint: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/alerts/{fingerprint}", headers=AUTH)
        assert response.status_code == 200, response.text
        row: dict[str, Any] = response.json()
        return row

    def live(self) -> list[dict[str, Any]]:
        """Incidents that were not merged into another one."""
        return [i for i in self.incidents() if i["status"] != "merged"]

    def all_timeline_kinds(self) -> list[str]:
        return [t["kind"] for i in self.incidents() for t in self.incident(i["id"])["timeline"]]


@pytest.fixture
def pipe(client: TestClient, db_url: str) -> Iterator[Pipeline]:
    p = Pipeline(client, db_url)
    yield p
    p.close()


def kinds(detail: dict[str, Any]) -> list[str]:
    return [t["kind"] for t in detail["timeline"]]


def entries(detail: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [t for t in detail["timeline"] if t["kind"] == kind]


# -- a cascade from the database up ------------------------------------------------------------

CASCADE = [
    ("database-postgres", "PostgresDown", "P1"),
    ("user-service", "UserLoginErrors", "P2"),
    ("ai-analysis-service", "AnalysisTimeouts", "P2"),
    ("feedback-service", "FeedbackQueueStuck", "P3"),
    ("api-gateway", "Gateway5xx", "P0"),
]


def cascade(t0: datetime) -> list[dict[str, Any]]:
    """The database first, then its dependents 45 s apart, the gateway (P0) last."""
    return [
        alert(service, name, t0 + timedelta(seconds=45 * i), severity)
        for i, (service, name, severity) in enumerate(CASCADE)
    ]


def test_database_cascade_is_one_incident_with_the_database_as_root_cause(
    pipe: Pipeline,
) -> None:
    pipe.load_graph()
    alerts = cascade(recent(10))
    fingerprints = [pipe.post(a)[0] for a in alerts]  # one request each, in time order

    [incident] = pipe.incidents()
    assert incident["status"] == "open"
    assert incident["root_cause_candidates"][0] == "database-postgres"
    assert {"web-frontend", "api-gateway", "user-service", "ai-analysis-service"} <= set(
        incident["blast_radius"]
    )
    assert "database-postgres" not in incident["blast_radius"]
    assert incident["severity"] == "P0"
    assert sorted(incident["alert_fingerprints"]) == sorted(fingerprints)
    assert sorted(incident["services"]) == sorted(s for s, _, _ in CASCADE)
    assert incident["title"].startswith("PostgresDown on database-postgres")

    detail = pipe.incident(incident["id"])
    because = {a["service"]: a["joined_because"] for a in detail["alerts"]}
    assert because["database-postgres"]["reason"] == "opened the incident"
    assert because["user-service"]["hops"] == 1
    assert because["user-service"]["via"] == "database-postgres"
    assert "1 hop(s) from database-postgres" in because["user-service"]["reason"]
    assert because["feedback-service"]["hops"] == 1
    # The gateway is two hops from the database but one from user-service, already in.
    assert because["api-gateway"]["hops"] == 1
    assert because["api-gateway"]["via"] == "user-service"

    [opened] = entries(detail, "opened")
    assert opened["pages"] is True
    assert opened["data"]["fingerprint"] == fingerprints[0]
    joined = entries(detail, "alert_joined")
    assert len(joined) == 4
    assert all(t["pages"] is False for t in joined)
    [raised] = entries(detail, "severity_raised")
    assert raised["pages"] is True
    assert raised["data"] == {"from": "P1", "to": "P0"}
    assert kinds(detail)[0] == "opened"
    assert "resolved" not in kinds(detail)


def test_cascade_posted_in_reverse_order_is_still_one_incident(pipe: Pipeline) -> None:
    pipe.load_graph()
    alerts = cascade(recent(10))
    fingerprints = [pipe.post(a)[0] for a in reversed(alerts)]  # the gateway arrives first

    live = pipe.live()
    assert len(live) == 1, live
    [incident] = live
    assert incident["status"] == "open"
    assert incident["root_cause_candidates"][0] == "database-postgres"
    assert "web-frontend" in incident["blast_radius"]
    assert incident["severity"] == "P0"
    assert sorted(incident["alert_fingerprints"]) == sorted(fingerprints)
    # Feedback-service is three hops from the gateway, so it opened an incident of its own
    # that a later alert (ai-analysis-service, two hops from both) merged into this one.
    for other in pipe.incidents():
        if other["id"] != incident["id"]:
            assert other["status"] == "merged"
            assert other["merged_into"] == incident["id"]
    detail = pipe.incident(incident["id"])
    assert "root_cause_changed" in kinds(detail)
    assert detail["root_cause_candidates"][0] == "database-postgres"


def test_unrelated_failures_at_the_same_time_are_two_incidents(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    s3 = pipe.post(alert("storage-s3", "BucketErrors", t0, "P1"))
    notify = pipe.post(alert("notification-service", "SmtpBacklog", t0 + timedelta(seconds=10)))
    incidents = pipe.incidents()
    assert len(incidents) == 2
    by_root = {i["root_cause_candidates"][0]: i for i in incidents}
    assert by_root["storage-s3"]["alert_fingerprints"] == s3
    assert by_root["notification-service"]["alert_fingerprints"] == notify
    assert by_root["notification-service"]["blast_radius"] == []
    assert all(i["status"] == "open" for i in incidents)


def test_an_alert_long_after_the_incident_opens_a_new_one(pipe: Pipeline) -> None:
    pipe.load_graph()
    first = pipe.post(alert("cache-redis", "RedisMemoryHigh", recent(40)))
    later = pipe.post(alert("cache-redis", "RedisEvictions", recent(10)))  # 30 minutes later
    incidents = pipe.incidents()
    assert len(incidents) == 2
    newest, oldest = incidents  # newest first
    assert oldest["alert_fingerprints"] == first
    assert newest["alert_fingerprints"] == later
    assert newest["id"] > oldest["id"]
    assert kinds(pipe.incident(newest["id"])).count("opened") == 1


def test_resolving_every_alert_resolves_the_incident(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(15)
    memory = alert("cache-redis", "RedisMemoryHigh", t0)
    evictions = alert("cache-redis", "RedisEvictions", t0 + timedelta(seconds=30))
    pipe.post(memory)
    pipe.post(evictions)
    [incident] = pipe.incidents()
    detail = pipe.incident(incident["id"])
    second = next(a for a in detail["alerts"] if a["labels"]["alertname"] == "RedisEvictions")
    assert second["joined_because"]["hops"] == 0
    assert "same service" in second["joined_because"]["reason"]

    pipe.post(alert("cache-redis", "RedisMemoryHigh", t0, resolved_at=recent(3)))
    [incident] = pipe.incidents()
    assert incident["status"] == "open"
    assert incident["resolved_at"] is None
    assert "resolved" not in kinds(pipe.incident(incident["id"]))

    ended = recent(1)
    pipe.post(alert("cache-redis", "RedisEvictions", t0 + timedelta(seconds=30), resolved_at=ended))
    [incident] = pipe.incidents()
    assert incident["status"] == "resolved"
    assert incident["resolved_at"] == iso(ended)
    detail = pipe.incident(incident["id"])
    [resolved] = entries(detail, "resolved")
    assert resolved["pages"] is True
    assert {a["status"] for a in detail["alerts"]} == {"resolved"}
    assert pipe.incidents(status="open") == []


def test_a_service_outside_the_graph_is_an_incident_of_its_own(pipe: Pipeline) -> None:
    pipe.load_graph()
    [fingerprint] = pipe.post(alert("billing-service", "InvoiceFailures", recent(5), "P1"))
    [incident] = pipe.incidents()
    assert incident["root_cause_candidates"] == ["billing-service"]
    assert incident["blast_radius"] == []
    assert incident["services"] == ["billing-service"]
    assert incident["alert_fingerprints"] == [fingerprint]
    assert incident["severity"] == "P1"


def test_alerts_without_a_service_label_are_grouped_by_alert_name_only(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    disk = am_alert({"alertname": "DiskFull", "instance": "a"}, starts_at=t0)
    disk_b = am_alert({"alertname": "DiskFull", "instance": "b"}, starts_at=t0)
    clock = am_alert({"alertname": "ClockSkew", "instance": "a"}, starts_at=t0)
    pipe.post(disk)
    pipe.post(clock)
    pipe.post(disk_b)
    incidents = pipe.incidents()
    assert len(incidents) == 2
    grouped = sorted(sorted(i["alert_fingerprints"]) for i in incidents)
    assert grouped == sorted(
        [[clock["fingerprint"]], sorted([disk["fingerprint"], disk_b["fingerprint"]])]
    )
    assert all(i["blast_radius"] == [] for i in incidents)


def test_an_alert_near_two_open_incidents_merges_them_into_the_older(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(10)
    # cache-redis and database-postgres are three hops apart (via api-gateway, user-service);
    # user-service is within two hops of both.
    cache = pipe.post(alert("cache-redis", "RedisDown", t0))
    db = pipe.post(alert("database-postgres", "PostgresDown", t0 + timedelta(seconds=20), "P1"))
    assert len(pipe.incidents(status="open")) == 2
    older, newer = sorted(pipe.incidents(), key=lambda i: i["id"])

    bridge = pipe.post(alert("user-service", "LoginErrors", t0 + timedelta(seconds=40)))

    merged = pipe.incident(newer["id"])
    assert merged["status"] == "merged"
    assert merged["merged_into"] == older["id"]
    assert [t["data"] for t in entries(merged, "merged")] == [{"into": older["id"]}]
    survivor = pipe.incident(older["id"])
    assert survivor["status"] == "open"
    assert sorted(survivor["alert_fingerprints"]) == sorted(cache + db + bridge)
    assert survivor["services"] == ["cache-redis", "database-postgres", "user-service"]
    assert survivor["severity"] == "P1"
    assert survivor["root_cause_candidates"][0] == "database-postgres"
    assert [t["data"] for t in entries(survivor, "merged")] == [{"from": newer["id"]}]
    assert [i["id"] for i in pipe.incidents(status="open")] == [older["id"]]
    # The merged incident no longer shows up as open on its services.
    service = pipe.client.get("/api/v1/services/database-postgres", headers=AUTH).json()
    assert [i["id"] for i in service["open_incidents"]] == [older["id"]]


def test_a_merge_that_raises_the_severity_pages(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(10)
    pipe.post(alert("cache-redis", "RedisSlow", t0, "P2"))
    pipe.post(alert("database-postgres", "PostgresDown", t0 + timedelta(seconds=20), "P0"))
    older, _ = sorted(pipe.incidents(), key=lambda i: i["id"])
    assert older["severity"] == "P2"
    pipe.post(alert("user-service", "LoginErrors", t0 + timedelta(seconds=40), "P2"))
    survivor = pipe.incident(older["id"])
    assert survivor["status"] == "open"
    assert survivor["severity"] == "P0"
    [raised] = entries(survivor, "severity_raised")
    assert raised["pages"] is True
    assert raised["data"] == {"from": "P2", "to": "P0"}


def test_resent_firing_alert_does_not_join_or_open_twice(pipe: Pipeline) -> None:
    pipe.load_graph()
    first = alert("user-service", "LoginErrors", recent(5))
    [fingerprint] = pipe.post(first)
    # Alertmanager re-sends the firing alert at every repeat interval; the annotations
    # may change between notifications, which makes it a new delivery.
    again = dict(first, annotations={"summary": "still failing", "value": "42"})
    pipe.post(again)
    pipe.post(again)  # an exact retry, a duplicate delivery
    [incident] = pipe.incidents()
    detail = pipe.incident(incident["id"])
    assert [a["fingerprint"] for a in detail["alerts"]] == [fingerprint]
    assert kinds(detail) == ["opened"]
    assert pipe.alert_row(fingerprint)["receive_count"] == 2


# -- the list API ------------------------------------------------------------------------------


def test_list_filters_and_cursor_pagination(pipe: Pipeline) -> None:
    t0 = recent(20)
    specs = [
        ("svc-a", "P0"),
        ("svc-b", "P2"),
        ("svc-c", "P3"),
        ("svc-d", "P1"),
        ("svc-e", "P2"),
    ]
    for i, (service, severity) in enumerate(specs):
        pipe.post(alert(service, "Broken", t0 + timedelta(minutes=i), severity), wait=False)
    pipe.wait()
    pipe.post(alert("svc-c", "Broken", t0 + timedelta(minutes=2), "P3", resolved_at=recent(1)))

    everything = pipe.incidents()
    assert len(everything) == 5
    ids = [i["id"] for i in everything]
    assert ids == sorted(ids, reverse=True)
    by_service = {i["services"][0]: i for i in everything}

    def services(**params: Any) -> list[str]:
        return [i["services"][0] for i in pipe.incidents(**params)]

    assert services(status="resolved") == ["svc-c"]
    assert sorted(services(status="open")) == ["svc-a", "svc-b", "svc-d", "svc-e"]
    assert services(status="merged") == []
    assert sorted(services(severity="P2")) == ["svc-b", "svc-e"]
    assert sorted(services(severity=["P0", "P1"])) == ["svc-a", "svc-d"]
    assert services(service="svc-b") == ["svc-b"]
    assert services(service="nothing-here") == []
    window = {"since": iso(t0 + timedelta(minutes=1)), "until": iso(t0 + timedelta(minutes=3))}
    assert sorted(services(**window)) == ["svc-b", "svc-c"]
    assert sorted(services(since=iso(t0 + timedelta(minutes=3)))) == ["svc-d", "svc-e"]
    assert services(until=iso(t0 + timedelta(seconds=1))) == ["svc-a"]
    assert services(status="open", severity="P2", service="svc-e") == ["svc-e"]
    assert by_service["svc-a"]["opened_at"] == iso(t0)

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = pipe.client.get("/api/v1/incidents", params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen.extend(i["id"] for i in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "x"}, "status"),
        ({"cursor": "abc"}, "cursor"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"severity": "P9"}, "severity"),
        ({"limit": "0"}, "limit"),
        ({"since": "yesterday"}, "since"),
        pytest.param(
            {"cursor": "\u00b2"},
            "cursor",
        ),
        pytest.param(
            {"cursor": "9" * 30},
            "cursor",
        ),
    ],
)
def test_bad_list_parameters_are_422_naming_the_field(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    response = client.get("/api/v1/incidents", params=params, headers=AUTH)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"].split("[")[0] == field
    assert field in body["message"]


def test_naive_since_with_aware_until_is_not_a_server_error(pipe: Pipeline) -> None:
    t0 = recent(20)
    pipe.post(alert("svc-a", "Broken", t0))
    # A time without a zone is taken as UTC, as it is when `since` comes alone.
    naive = (t0 - timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    alone = pipe.client.get("/api/v1/incidents", params={"since": naive}, headers=AUTH)
    assert alone.status_code == 200, alone.text
    assert len(alone.json()["items"]) == 1
    params = {"since": naive, "until": iso(t0 + timedelta(minutes=1))}
    both = pipe.client.get("/api/v1/incidents", params=params, headers=AUTH)
    assert both.status_code == 200, both.text
    assert len(both.json()["items"]) == 1


def test_unknown_incident_is_404(client: TestClient) -> None:
    response = client.get("/api/v1/incidents/999999", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert client.get("/api/v1/incidents/999999").status_code == 401


# -- concurrent workers on PostgreSQL ----------------------------------------------------------

INCIDENT_TABLES = (
    "alerts",
    "pipeline_jobs",
    "incidents",
    "incident_services",
    "incident_alerts",
    "timeline",
    "alert_states",
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
                conn.execute(sa.text(f"TRUNCATE {', '.join(INCIDENT_TABLES)} RESTART IDENTITY"))
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
