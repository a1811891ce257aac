"""Merges through the real service: linked roots that arrived apart, the opening time a
late alert moves back, and what /explain says of alerts that came with a merge.

On SQLite and on PostgreSQL (the `pipe` fixture runs each test on both).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.api.incident_pipe import Pipeline, alert, entries, recent
from tests.conftest import AUTH


def pages(pipe: Pipeline) -> list[tuple[int, str]]:
    return [
        (i["id"], t["kind"])
        for i in pipe.incidents()
        for t in pipe.incident(i["id"])["timeline"]
        if t["pages"]
    ]


def explain(pipe: Pipeline, incident_id: int) -> dict[str, Any]:
    response = pipe.client.get(f"/api/v1/incidents/{incident_id}/explain", headers=AUTH)
    assert response.status_code == 200, response.text
    trace: dict[str, Any] = response.json()
    return trace


def test_a_silent_database_with_a_symptom_first_is_still_one_incident(pipe: Pipeline) -> None:
    """notification-service (a symptom of user-service) and feedback-service open two
    incidents; user-service, linked to feedback-service's root through the silent database
    and below notification-service, arrives last and brings them together."""
    pipe.load_graph()
    t0 = recent(5)
    services = ["notification-service", "feedback-service", "ai-analysis-service", "user-service"]
    for n, service in enumerate(services):
        pipe.post(alert(service, f"Errors{n}", t0 + timedelta(seconds=5 * n)))
    [incident] = pipe.live()
    assert incident["services"] == sorted(services)
    assert incident["roots"] == ["ai-analysis-service", "feedback-service", "user-service"]
    first = incident["root_causes"][0]
    assert (first["service"], first["inferred"]) == ("database-postgres", True)
    assert [kind for _, kind in pages(pipe)] == ["opened"]
    [merged] = pipe.incidents(status="merged")
    assert merged["merged_into"] == incident["id"]
    user = next(a for a in explain(pipe, incident["id"])["alerts"] if a["alertname"] == "Errors3")
    assert user["action"] == "merge"
    assert user["absorbed"] == [merged["id"]]
    assert "linked roots belong to one incident" in user["reason"]


def test_the_same_burst_in_the_other_order_is_the_same_incident(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    services = ["notification-service", "feedback-service", "ai-analysis-service", "user-service"]
    for n in (3, 0, 1, 2):
        pipe.post(alert(services[n], f"Errors{n}", t0 + timedelta(seconds=5 * n)))
    [incident] = pipe.live()
    assert incident["services"] == sorted(services)
    assert incident["root_causes"][0]["service"] == "database-postgres"


@pytest.mark.parametrize("earliest_first", [False, True])
def test_opened_at_and_the_opened_entry_are_the_earliest_start(
    pipe: Pipeline, earliest_first: bool
) -> None:
    pipe.load_graph()
    t0 = recent(5)
    late = alert("user-service", "LoginErrors", t0 + timedelta(seconds=60))
    early = alert("database-postgres", "PostgresDown", t0, "P1")
    for one in (early, late) if earliest_first else (late, early):
        pipe.post(one)
    [incident] = pipe.live()
    detail = pipe.incident(incident["id"])
    [opened] = entries(detail, "opened")
    assert detail["opened_at"] == opened["at"] == detail["timeline"][0]["at"]
    assert detail["opened_at"].startswith(t0.strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_merge_with_an_earlier_incident_moves_the_survivors_opening(pipe: Pipeline) -> None:
    """By hand, a newer incident merges an older-starting one: the survivor opened then."""
    pipe.load_graph()
    t0 = recent(10)
    pipe.post(alert("cache-redis", "RedisDown", t0 + timedelta(minutes=2)))
    pipe.post(alert("storage-s3", "S3Errors", t0))
    newer, older = sorted(pipe.live(), key=lambda i: i["id"])
    response = pipe.client.post(
        f"/api/v1/incidents/{newer['id']}/merge", json={"from": [older["id"]]}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    detail = pipe.incident(newer["id"])
    [opened] = entries(detail, "opened")
    assert detail["opened_at"] == opened["at"] == detail["timeline"][0]["at"]
    assert opened["at"].startswith(t0.strftime("%Y-%m-%dT%H:%M:%S"))


def test_explain_follows_the_alerts_a_merge_moved(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(10)
    [notify] = pipe.post(alert("notification-service", "NotifyLag", t0, "P3"))
    [feedback] = pipe.post(alert("feedback-service", "FeedbackErrors", t0 + timedelta(seconds=20)))
    older, newer = sorted(pipe.incidents(), key=lambda i: i["id"])
    pipe.post(alert("database-postgres", "PostgresDown", t0 + timedelta(seconds=40), "P1"))
    trace = explain(pipe, older["id"])
    assert trace["merged_into"] is None
    by_print = {a["fingerprint"]: a for a in trace["alerts"]}
    moved = by_print[feedback]
    assert moved["action"] == "moved"
    assert moved["moved_from"] == newer["id"]
    assert moved["reason"].startswith(
        f"it opened incident {newer['id']}, which merged into this one: "
    )
    assert "common cause" in moved["reason"]
    assert by_print[notify]["action"] == "open"  # it opened this one
    detail = pipe.incident(older["id"])
    because = {a["fingerprint"]: a["joined_because"] for a in detail["alerts"]}
    assert because[feedback]["originally"]["action"] == "open"
    absorbed = explain(pipe, newer["id"])
    assert (absorbed["status"], absorbed["merged_into"], absorbed["alerts"]) == (
        "merged",
        older["id"],
        [],
    )


def test_an_alert_firing_again_reopens_its_incident_and_pages(pipe: Pipeline) -> None:
    """The alert-driven reopen and the API's reopen share lifecycle.reopen_incident: the
    incident is open and triggered again, no longer acknowledged, open on its services,
    and the "reopened" entry pages."""
    pipe.load_graph()
    t0 = recent(10)
    pipe.post(alert("user-service", "LoginErrors", t0, "P1"))
    [incident] = pipe.live()
    ack = pipe.client.post(f"/api/v1/incidents/{incident['id']}/acknowledge", headers=AUTH)
    assert ack.status_code == 200, ack.text
    pipe.post(alert("user-service", "LoginErrors", t0, "P1", resolved_at=recent(5)))
    assert pipe.incident(incident["id"])["status"] == "resolved"
    pipe.post(alert("user-service", "LoginErrors", recent(1), "P1"))
    detail = pipe.incident(incident["id"])
    assert (detail["status"], detail["state"], detail["acknowledged_by"]) == (
        "open",
        "triggered",
        None,
    )
    [reopened] = entries(detail, "reopened")
    assert reopened["pages"] is True
    assert detail["paged_at"] == reopened["at"]
    service = pipe.client.get("/api/v1/services/user-service", headers=AUTH).json()
    assert [i["id"] for i in service["open_incidents"]] == [incident["id"]]
