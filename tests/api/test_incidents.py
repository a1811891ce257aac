"""Alerts become incidents: correlation over the service graph, merge, resolve, read API.

Every test drives the real service: webhook bodies go in over HTTP, the embedded worker
runs the pipeline, and the incidents API is read back. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

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
from tests.conftest import AUTH
from tests.factories import am_alert, iso

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
    pipe_unheld: Pipeline,
) -> None:
    pipe_unheld.load_graph()
    alerts = cascade(recent(10))
    fingerprints = [pipe_unheld.post(a)[0] for a in alerts]  # one request each, in time order

    [incident] = pipe_unheld.incidents()
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

    detail = pipe_unheld.incident(incident["id"])
    because = {a["service"]: a["joined_because"] for a in detail["alerts"]}
    assert because["database-postgres"]["reason"] == "opened the incident"
    assert because["user-service"]["hops"] == 1
    assert because["user-service"]["via"] == "database-postgres"
    assert because["user-service"]["reason"] == (
        "user-service depends on database-postgres (1 hop), the root of this incident"
    )
    assert because["user-service"]["action"] == "join"
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
    assert second["joined_because"]["reason"] == (
        "another alert on cache-redis is already in this incident"
    )

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
