"""Correlation rule v2 through the real service: the issue's scenarios on the example
graph, paging that follows real incidents, true explanations, and the storm cap.

Webhooks go in over HTTP, the embedded worker runs the pipeline, the API is read back;
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.api.incident_pipe import Pipeline, alert, entries, kinds, recent
from tests.conftest import AUTH


def paging(pipe: Pipeline) -> list[tuple[int, str]]:
    """Every paging timeline entry, as (incident, kind)."""
    return [
        (i["id"], t["kind"])
        for i in pipe.incidents()
        for t in pipe.incident(i["id"])["timeline"]
        if t["pages"]
    ]


def services_of(pipe: Pipeline) -> list[list[str]]:
    return sorted(i["services"] for i in pipe.live())


def test_database_and_bedrock_failing_together_are_two_incidents(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    pipe.post(alert("database-postgres", "PostgresDown", t0, "P1"))
    pipe.post(alert("ai-models-bedrock", "BedrockThrottling", t0 + timedelta(seconds=5)))
    [ai] = pipe.post(alert("ai-analysis-service", "AnalysisErrors", t0 + timedelta(seconds=10)))
    assert services_of(pipe) == [
        ["ai-analysis-service", "database-postgres"],
        ["ai-models-bedrock"],
    ]
    db_incident = next(i for i in pipe.live() if "database-postgres" in i["services"])
    bedrock = next(i for i in pipe.live() if i["services"] == ["ai-models-bedrock"])
    member = next(a for a in pipe.incident(db_incident["id"])["alerts"] if a["fingerprint"] == ai)
    # Both roots explain it: it joins the earliest and records the other, never merging.
    assert member["joined_because"]["possibly_related"] == [bedrock["id"]]
    assert member["joined_because"]["reason"] == (
        "ai-analysis-service depends on database-postgres (1 hop), the root of this incident"
    )
    assert pipe.incidents(status="merged") == []


def test_the_same_outage_arriving_consumer_first_is_still_two_incidents(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    pipe.post(alert("ai-analysis-service", "AnalysisErrors", t0 + timedelta(seconds=10)))
    pipe.post(alert("database-postgres", "PostgresDown", t0, "P1"))
    pipe.post(alert("ai-models-bedrock", "BedrockThrottling", t0 + timedelta(seconds=5)))
    assert services_of(pipe) == [
        ["ai-analysis-service", "database-postgres"],
        ["ai-models-bedrock"],
    ]


def test_cache_and_user_service_failing_together_are_two_incidents(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    pipe.post(alert("cache-redis", "RedisDown", t0), alert("user-service", "LoginErrors", t0))
    assert services_of(pipe) == [["cache-redis"], ["user-service"]]


def test_a_silent_database_is_inferred_as_the_first_candidate(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    for n, service in enumerate(["user-service", "feedback-service", "ai-analysis-service"]):
        pipe.post(alert(service, f"Errors{n}", t0 + timedelta(seconds=10 * n)))
    [incident] = pipe.live()
    assert incident["roots"] == ["ai-analysis-service", "feedback-service", "user-service"]
    first = incident["root_causes"][0]
    assert first["service"] == "database-postgres"
    assert first["inferred"] is True
    assert first["reason"] == (
        "database-postgres (no alert; user-service, feedback-service and ai-analysis-service "
        "all depend on it)"
    )
    assert incident["root_cause_candidates"][0] == "database-postgres"
    assert [kind for _, kind in paging(pipe)] == ["opened"]


def test_symptoms_two_minutes_before_their_root_are_one_incident(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    pipe.post(
        alert("api-gateway", "Gateway5xx", t0, "P1"),
        alert("user-service", "LoginErrors", t0 + timedelta(seconds=5)),
        alert("web-frontend", "PageErrors", t0 + timedelta(seconds=8)),
    )
    [db] = pipe.post(alert("database-postgres", "PostgresDown", t0 + timedelta(minutes=2), "P1"))
    [incident] = pipe.live()
    assert incident["roots"] == ["database-postgres"]
    assert incident["root_causes"][0]["service"] == "database-postgres"
    assert incident["root_causes"][0]["inferred"] is False
    assert incident["title"].startswith("PostgresDown on database-postgres")
    detail = pipe.incident(incident["id"])
    because = {a["fingerprint"]: a["joined_because"] for a in detail["alerts"]}
    assert because[db]["action"] == "reroot"
    # The gateway opened it, user-service (below it) re-rooted it, then the database did.
    rerooted = [t["message"] for t in entries(detail, "rerooted")]
    assert rerooted[-1] == (
        "user-service depends on database-postgres (1 hop): database-postgres is the "
        "incident's new root"
    )
    assert len(rerooted) == 2
    assert [kind for _, kind in paging(pipe)] == ["opened"]
    # opened_at is the start of the earliest alert, and so is the first timeline entry.
    assert detail["opened_at"] == detail["timeline"][0]["at"]
    assert detail["timeline"][0]["kind"] == "opened"


def test_an_inhibited_p2_is_a_muted_member_of_its_p0s_incident(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    [p0] = pipe.post(alert("cache-redis", "RedisDown", t0, "P0"))
    # The P2 started hours before the P0, far outside the window: inhibition ignores time.
    [p2] = pipe.post(alert("cache-redis", "RedisSlow", t0 - timedelta(hours=3), "P2"))
    pipe.post(alert("cache-redis", "RedisSlow", t0 - timedelta(hours=3), "P2"))  # a repeat
    [incident] = [i for i in pipe.live() if p0 in i["alert_fingerprints"]]
    detail = pipe.incident(incident["id"])
    members = {a["fingerprint"]: a["status"] for a in detail["alerts"]}
    assert members.get(p2) == "muted", members
    assert incident["severity"] == "P0"
    assert [kind for iid, kind in paging(pipe) if iid == incident["id"]] == ["opened"]


def test_same_run_open_then_merge_keeps_every_alert_and_pages_once(pipe_unheld: Pipeline) -> None:
    """One body: a symptom opens incident S, a later alert links S to older incident T."""
    pipe_unheld.load_graph()
    t0 = recent(5)
    [notify] = pipe_unheld.post(alert("notification-service", "NotifyLag", t0, "P3"))
    feedback, db = pipe_unheld.post(
        alert("feedback-service", "FeedbackErrors", t0 + timedelta(seconds=10), "P1"),
        alert("database-postgres", "PostgresDown", t0 + timedelta(seconds=20), "P2"),
    )
    [incident] = pipe_unheld.live()
    assert sorted(incident["alert_fingerprints"]) == sorted([notify, feedback, db])
    # Every alert is in a live incident, none was left on the merged one.
    for merged in pipe_unheld.incidents(status="merged"):
        assert pipe_unheld.incident(merged["id"])["alerts"] == []
    # The absorbed incident opened and merged in one run: it never paged.
    kinds = [kind for _, kind in paging(pipe_unheld)]
    assert kinds == ["opened", "severity_raised"]
    assert incident["severity"] == "P1"


def test_a_merge_within_the_opening_hold_pages_once_at_the_final_severity(
    pipe: Pipeline,
) -> None:
    """Default hold: the two openings happen within it, so the merge leaves one page."""
    pipe.load_graph()
    t0 = recent(5)
    pipe.post(alert("notification-service", "NotifyLag", t0, "P3"))
    pipe.post(alert("feedback-service", "FeedbackErrors", t0 + timedelta(seconds=10), "P0"))
    pipe.post(alert("database-postgres", "PostgresDown", t0 + timedelta(seconds=20), "P2"))
    [incident] = pipe.live()
    assert incident["severity"] == "P0"
    pages = [t for i in pipe.incidents() for t in pipe.incident(i["id"])["timeline"] if t["pages"]]
    assert [(t["kind"], t["data"]["severity"]) for t in pages] == [("opened", "P0")]
    assert "hold_until" in pages[0]["data"]
    [merged] = pipe.incidents(status="merged")
    [cancelled] = entries(pipe.incident(merged["id"]), "opened")
    assert cancelled["pages"] is False
    assert cancelled["data"]["folded_into"] == incident["id"]


def common_cause(pipe: Pipeline, severities: tuple[str, str, str]) -> tuple[dict[str, Any], ...]:
    """notification-service (2 hops above the database) and feedback-service (1 hop) are
    not linked (2 + 1 > 2): two incidents, until the database's alert explains both roots."""
    pipe.load_graph()
    t0 = recent(10)
    notify = pipe.post(alert("notification-service", "NotifyLag", t0, severities[0]))
    feedback = pipe.post(
        alert("feedback-service", "FeedbackErrors", t0 + timedelta(seconds=20), severities[1])
    )
    assert len(pipe.incidents(status="open")) == 2
    older, newer = sorted(pipe.incidents(), key=lambda i: i["id"])
    db = pipe.post(
        alert("database-postgres", "PostgresDown", t0 + timedelta(seconds=40), severities[2])
    )
    return older, newer, {"notify": notify, "feedback": feedback, "db": db}


def test_a_common_cause_merges_the_incidents_it_explains_into_the_older(pipe: Pipeline) -> None:
    older, newer, sent = common_cause(pipe, ("P3", "P2", "P1"))
    merged = pipe.incident(newer["id"])
    assert merged["status"] == "merged"
    assert merged["merged_into"] == older["id"]
    assert [t["data"] for t in entries(merged, "merged")] == [{"into": older["id"]}]
    survivor = pipe.incident(older["id"])
    assert survivor["status"] == "open"
    assert sorted(survivor["alert_fingerprints"]) == sorted(
        sent["notify"] + sent["feedback"] + sent["db"]
    )
    assert survivor["services"] == ["database-postgres", "feedback-service", "notification-service"]
    assert survivor["severity"] == "P1"
    assert survivor["roots"] == ["database-postgres"]
    assert survivor["root_cause_candidates"][0] == "database-postgres"
    assert survivor["opened_at"] == entries(survivor, "opened")[0]["at"]
    [entry] = entries(survivor, "merged")
    assert entry["data"]["from"] == newer["id"]
    # The survivor's timeline says which alerts moved and carries the absorbed entries.
    assert [m["fingerprint"] for m in entry["data"]["moved"]] == sent["feedback"]
    assert "FeedbackErrors" in entry["message"]
    assert [e["kind"] for e in entry["data"]["absorbed_entries"]] == ["opened"]
    assert "FeedbackErrors" in entry["data"]["absorbed_entries"][0]["message"]
    because = {a["service"]: a["joined_because"] for a in survivor["alerts"]}
    assert because["database-postgres"]["action"] == "merge"
    assert because["database-postgres"]["absorbed"] == [newer["id"]]
    assert "common cause" in because["database-postgres"]["reason"]
    assert "rerooted" in kinds(survivor)
    assert [i["id"] for i in pipe.incidents(status="open")] == [older["id"]]
    # The merged incident no longer shows up as open on its services.
    service = pipe.client.get("/api/v1/services/feedback-service", headers=AUTH).json()
    assert [i["id"] for i in service["open_incidents"]] == [older["id"]]


def test_a_merge_of_alerts_already_paged_does_not_page_again(pipe_unheld: Pipeline) -> None:
    older, newer, _ = common_cause(pipe_unheld, ("P3", "P0", "P2"))
    survivor = pipe_unheld.incident(older["id"])
    assert survivor["severity"] == "P0"
    assert survivor["paged_severity"] == "P0"
    assert entries(survivor, "severity_raised") == []
    paging = [
        t["kind"]
        for incident_id in (older["id"], newer["id"])
        for t in pipe_unheld.incident(incident_id)["timeline"]
        if t["pages"]
    ]
    assert paging == ["opened", "opened"]


def test_a_merge_whose_cause_is_more_severe_than_what_was_paged_pages_once(
    pipe_unheld: Pipeline,
) -> None:
    older, _, _ = common_cause(pipe_unheld, ("P3", "P2", "P0"))
    survivor = pipe_unheld.incident(older["id"])
    assert survivor["severity"] == "P0"
    [raised] = entries(survivor, "severity_raised")
    assert raised["pages"] is True
    assert raised["data"] == {"from": "P2", "to": "P0"}
    assert survivor["paged_severity"] == "P0"


def test_the_explain_endpoint_says_why_each_alert_is_where_it_is(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    pipe.post(alert("database-postgres", "PostgresDown", t0, "P1"))
    pipe.post(alert("ai-models-bedrock", "BedrockThrottling", t0 + timedelta(seconds=5)))
    pipe.post(alert("ai-analysis-service", "AnalysisErrors", t0 + timedelta(seconds=10)))
    db_incident = next(i for i in pipe.live() if "database-postgres" in i["services"])
    bedrock = next(i for i in pipe.live() if i["services"] == ["ai-models-bedrock"])
    response = pipe.client.get(f"/api/v1/incidents/{db_incident['id']}/explain", headers=AUTH)
    assert response.status_code == 200, response.text
    trace = response.json()
    assert trace["roots"] == ["database-postgres"]
    by_name = {a["alertname"]: a for a in trace["alerts"]}
    assert by_name["PostgresDown"]["action"] == "open"
    analysis = by_name["AnalysisErrors"]
    assert (analysis["action"], analysis["via"], analysis["hops"]) == (
        "join",
        "database-postgres",
        1,
    )
    assert [r["id"] for r in analysis["possibly_related"]] == [bedrock["id"]]
    assert analysis["possibly_related"][0]["status"] == "open"


def test_explaining_an_unknown_incident_is_a_404(client: TestClient) -> None:
    response = client.get("/api/v1/incidents/999999/explain", headers=AUTH)
    assert response.status_code == 404
    assert "no incident 999999" in response.json()["message"]


def test_explaining_a_bad_id_is_a_422_naming_it(client: TestClient) -> None:
    response = client.get("/api/v1/incidents/abc/explain", headers=AUTH)
    assert response.status_code == 422
    assert "incident_id" in response.text


def test_a_body_of_many_unrelated_alerts_pages_up_to_the_cap_then_once(pipe: Pipeline) -> None:
    t0 = recent(1)
    body: list[dict[str, Any]] = [
        alert(f"svc-{n:05d}", f"Down{n}", t0 + timedelta(milliseconds=n)) for n in range(400)
    ]
    pipe.post(*body, wait=False)
    pipe.wait(60)
    incidents = pipe.incidents(limit=500)
    assert len(incidents) == 400
    kinds = [kind for _, kind in paging(pipe)]
    assert kinds.count("opened") == 30  # the default cap
    assert kinds.count("storm") == 1
    storm = [
        t for i in incidents for t in pipe.incident(i["id"])["timeline"] if t["kind"] == "storm"
    ]
    assert storm[0]["data"]["count"] == 370
    folded = [
        t
        for i in incidents
        for t in pipe.incident(i["id"])["timeline"]
        if t["kind"] == "opened" and not t["pages"]
    ]
    assert len(folded) == 370
    assert all("alert storm" in t["message"] for t in folded)


def test_a_muted_member_that_resolves_and_fires_again_stays_muted(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    [p0] = pipe.post(alert("cache-redis", "RedisDown", t0, "P0"))
    [p2] = pipe.post(alert("cache-redis", "RedisSlow", t0 + timedelta(seconds=5)))
    pipe.post(
        alert(
            "cache-redis",
            "RedisSlow",
            t0 + timedelta(seconds=5),
            resolved_at=t0 + timedelta(seconds=30),
        )
    )
    pipe.post(alert("cache-redis", "RedisSlow", t0 + timedelta(seconds=60)))
    [incident] = pipe.live()
    members = {a["fingerprint"]: a["status"] for a in pipe.incident(incident["id"])["alerts"]}
    assert members == {p0: "firing", p2: "muted"}
    assert incident["severity"] == "P0"
