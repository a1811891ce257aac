"""The service graph API, silences and maintenance windows, inhibition and flapping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from incidents.db import utcnow
from tests.api.test_incidents import EXAMPLE_GRAPH, Pipeline, alert, entries, kinds, recent
from tests.conftest import AUTH
from tests.factories import iso

GRAPH = "/api/v1/services/graph"
SILENCES = "/api/v1/silences"


@pytest.fixture
def pipe(client: TestClient, db_url: str) -> Iterator[Pipeline]:
    p = Pipeline(client, db_url)
    yield p
    p.close()


def put_graph(client: TestClient, body: str, content_type: str = "application/yaml") -> Any:
    return client.put(GRAPH, content=body.encode(), headers={**AUTH, "Content-Type": content_type})


def silence(client: TestClient, **fields: Any) -> Any:
    body: dict[str, Any] = {
        "ends_at": iso(utcnow() + timedelta(hours=1)),
        "created_by": "alice",
        "comment": "planned work",
    }
    body.update(fields)
    body = {k: v for k, v in body.items() if v is not None}
    return client.post(SILENCES, json=body, headers=AUTH)


# -- the graph ---------------------------------------------------------------------------------


def test_graph_round_trips_through_put_and_get_with_its_digest_as_etag(
    client: TestClient,
) -> None:
    put = put_graph(client, EXAMPLE_GRAPH.read_text())
    assert put.status_code == 200, put.text
    result = put.json()
    assert result["services"] == 11
    assert result["cycles"] == []
    assert put.headers["ETag"] == f'"{result["digest"]}"'

    got = client.get(GRAPH, headers=AUTH)
    assert got.status_code == 200
    assert got.headers["ETag"] == f'"{result["digest"]}"'
    document = got.json()
    assert list(document) == ["services"]
    names = [s["name"] for s in document["services"]]
    assert names == sorted(s["name"] for s in yaml.safe_load(EXAMPLE_GRAPH.read_text())["services"])
    gateway = next(s for s in document["services"] if s["name"] == "api-gateway")
    assert gateway == {
        "name": "api-gateway",
        "team": "platform",
        "tier": "1",
        "depends_on": ["cache-redis", "document-processor", "user-service"],
        "labels": {"kind": "gateway", "runtime": "kubernetes"},
    }

    # What GET returns is what PUT takes, as JSON too: the same graph, the same digest.
    again = put_graph(client, json.dumps(document), "application/json")
    assert again.status_code == 200, again.text
    assert again.json()["digest"] == result["digest"]
    assert client.get(GRAPH, headers=AUTH).json() == document


def test_graph_json_body_is_accepted(client: TestClient) -> None:
    doc = {"services": [{"name": "a", "depends_on": ["b"]}, {"name": "b"}]}
    response = put_graph(client, json.dumps(doc), "application/json")
    assert response.status_code == 200, response.text
    assert response.json()["services"] == 2
    got = client.get(GRAPH, headers=AUTH).json()
    assert [(s["name"], s["depends_on"]) for s in got["services"]] == [("a", ["b"]), ("b", [])]


@pytest.mark.parametrize(
    ("body", "field", "named"),
    [
        (
            "services:\n  - name: a\n    depends_on: [ghost]\n",
            "services[0].depends_on[0]",
            "ghost",
        ),
        ("services:\n  - name: a\n  - name: b\n  - name: a\n", "services[2].name", "'a'"),
        ("services:\n  - name: a\n    owner: me\n", "services[0].owner", "owner"),
    ],
)
def test_invalid_graph_is_422_naming_the_problem(
    client: TestClient, body: str, field: str, named: str
) -> None:
    response = put_graph(client, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert named in error["message"]
    assert any(e["field"] == field for e in error["errors"])


def test_graph_yaml_syntax_error_names_the_line(client: TestClient) -> None:
    body = "services:\n  - name: a\n    depends_on: [b\n  - name: b\n"
    response = put_graph(client, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == "document"
    assert isinstance(error["line"], int)
    assert 3 <= error["line"] <= 5
    assert f"line {error['line']}" in error["message"]
    # Nothing was stored.
    assert client.get(GRAPH, headers=AUTH).json() == {"services": []}


def test_graph_cycles_are_allowed_and_reported(client: TestClient) -> None:
    body = (
        "services:\n"
        "  - {name: a, depends_on: [b]}\n"
        "  - {name: b, depends_on: [a]}\n"
        "  - {name: c, depends_on: [a]}\n"
    )
    response = put_graph(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["cycles"] == [["a", "b"]]
    assert client.get("/api/v1/services/a", headers=AUTH).json()["blast_radius"] == ["b", "c"]


def test_one_service_shows_neighbours_blast_radius_and_open_incidents(pipe: Pipeline) -> None:
    pipe.load_graph()
    client = pipe.client
    quiet = client.get("/api/v1/services/database-postgres", headers=AUTH)
    assert quiet.status_code == 200, quiet.text
    assert quiet.json()["open_incidents"] == []

    pipe.post(alert("database-postgres", "PostgresDown", recent(5), "P0"))
    [incident] = pipe.incidents()
    body = client.get("/api/v1/services/database-postgres", headers=AUTH).json()
    assert body["name"] == "database-postgres"
    assert body["team"] == "data-platform"
    assert body["dependencies"] == []
    assert body["dependents"] == ["ai-analysis-service", "feedback-service", "user-service"]
    assert body["blast_radius"] == [
        "ai-analysis-service",
        "api-gateway",
        "document-processor",
        "feedback-service",
        "notification-service",
        "user-service",
        "web-frontend",
    ]
    assert [(i["id"], i["severity"]) for i in body["open_incidents"]] == [(incident["id"], "P0")]
    gateway = client.get("/api/v1/services/api-gateway", headers=AUTH).json()
    assert gateway["dependencies"] == ["cache-redis", "document-processor", "user-service"]
    assert gateway["open_incidents"] == []

    missing = client.get("/api/v1/services/no-such-service", headers=AUTH)
    assert missing.status_code == 404
    assert "no-such-service" in missing.json()["message"]


def test_a_new_graph_takes_effect_for_correlation_without_a_restart(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(10)
    # In the example graph cache-redis and storage-s3 are three hops apart.
    pipe.post(alert("cache-redis", "RedisDown", t0))
    pipe.post(alert("storage-s3", "BucketErrors", t0 + timedelta(seconds=10)))
    assert len(pipe.incidents(status="open")) == 2

    doc = yaml.safe_load(EXAMPLE_GRAPH.read_text())
    for service in doc["services"]:
        if service["name"] == "storage-s3":
            service["depends_on"] = ["cache-redis"]  # now adjacent
    pipe.load_graph(yaml.safe_dump(doc))

    # Under the new graph cache-redis lies below storage-s3: a new cache alert explains the
    # storage incident's root and is itself in the cache incident, so the two merge.
    pipe.post(alert("cache-redis", "RedisEvictions", t0 + timedelta(seconds=20)))
    [incident] = pipe.incidents(status="open")
    assert incident["services"] == ["cache-redis", "storage-s3"]
    assert incident["root_cause_candidates"][0] == "cache-redis"
    assert len(incident["alert_fingerprints"]) == 3
    assert len(pipe.incidents(status="merged")) == 1


# -- inhibition --------------------------------------------------------------------------------


def test_critical_alert_inhibits_warnings_of_its_own_service_only(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    [critical] = pipe.post(alert("database-postgres", "PostgresDown", t0, "P0"))
    [warning] = pipe.post(alert("database-postgres", "SlowQueries", t0 + timedelta(seconds=20)))
    [info] = pipe.post(alert("database-postgres", "Vacuum", t0 + timedelta(seconds=25), "P3"))
    [neighbour] = pipe.post(alert("user-service", "SlowLogins", t0 + timedelta(seconds=30)))

    assert pipe.alert_row(warning)["inhibited_by"] == [critical]
    assert pipe.alert_row(info)["inhibited_by"] == [critical]
    assert pipe.alert_row(neighbour)["inhibited_by"] == []
    assert pipe.alert_row(critical)["inhibited_by"] == []
    # The inhibited alerts are members of their inhibitor's incident, muted: shown, not
    # counted, paging no one.
    [incident] = pipe.incidents()
    assert sorted(incident["alert_fingerprints"]) == sorted([critical, warning, info, neighbour])
    assert incident["severity"] == "P0"
    assert incident["services"] == ["database-postgres", "user-service"]
    detail = pipe.incident(incident["id"])
    status = {a["fingerprint"]: a["status"] for a in detail["alerts"]}
    assert status == {critical: "firing", warning: "muted", info: "muted", neighbour: "firing"}
    because = {a["fingerprint"]: a["joined_because"] for a in detail["alerts"]}
    assert because[warning]["action"] == "muted"
    assert because[warning]["inhibited_by"] == critical
    assert [t["kind"] for t in detail["timeline"] if t["pages"]] == ["opened"]


def test_a_high_alert_is_not_inhibited_by_a_critical_one(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(5)
    [critical] = pipe.post(alert("cache-redis", "RedisDown", t0, "P0"))
    [high] = pipe.post(alert("cache-redis", "RedisErrors", t0 + timedelta(seconds=5), "P1"))
    assert pipe.alert_row(high)["inhibited_by"] == []
    [incident] = pipe.incidents()
    assert sorted(incident["alert_fingerprints"]) == sorted([critical, high])


# -- flapping ----------------------------------------------------------------------------------


def test_flapping_alert_gets_one_note_and_no_incident_per_flip(pipe: Pipeline) -> None:
    pipe.load_graph()
    t0 = recent(20)
    fingerprint = ""
    # Firing and resolved in turn, one notification each: eleven state changes in 20 minutes.
    for flip in range(6):
        start = t0 + timedelta(minutes=3 * flip)
        [fingerprint] = pipe.post(alert("user-service", "LoginErrors", start))
        end = start + timedelta(minutes=1, seconds=30)
        pipe.post(alert("user-service", "LoginErrors", start, resolved_at=end))

    assert pipe.alert_row(fingerprint)["flapping"] is True
    all_kinds = pipe.all_timeline_kinds()
    assert all_kinds.count("flapping") == 1
    assert all_kinds.count("opened") == 1  # today: 3, one per re-fire before the flap shows
    [incident] = pipe.live()
    assert incident["flapping"] is True
    assert incident["alert_fingerprints"] == [fingerprint]
    assert kinds(pipe.incident(incident["id"])).count("flapping") == 1


def test_flapping_is_noted_once_on_the_incident(pipe: Pipeline) -> None:
    """What holds today: once flapping, further flips neither resolve nor re-open."""
    pipe.load_graph()
    t0 = recent(25)
    # A steady alert keeps the incident open, so the early flips cannot close it.
    [steady] = pipe.post(alert("user-service", "HighLatency", t0))
    fingerprint = ""
    for flip in range(6):
        start = t0 + timedelta(minutes=3 * flip, seconds=10)
        [fingerprint] = pipe.post(alert("user-service", "LoginErrors", start))
        end = start + timedelta(minutes=1, seconds=30)
        pipe.post(alert("user-service", "LoginErrors", start, resolved_at=end))

    assert pipe.alert_row(fingerprint)["flapping"] is True
    [incident] = pipe.incidents()
    assert incident["flapping"] is True
    assert sorted(incident["alert_fingerprints"]) == sorted({steady, fingerprint})
    detail = pipe.incident(incident["id"])
    assert kinds(detail).count("flapping") == 1
    assert kinds(detail).count("opened") == 1
    assert "resolved" not in kinds(detail)
    [note] = entries(detail, "flapping")
    assert note["data"]["fingerprint"] == fingerprint


def test_a_graph_of_ten_thousand_services_goes_through_the_api(client: TestClient) -> None:
    lines = ["services:"]
    for i in range(10_000):
        lines.append(f"  - name: svc-{i:05d}")
        lines.append(f"    team: team-{i % 50}")
        if i:
            lines.append(f"    depends_on: [svc-{(i - 1) // 4:05d}]")
    response = put_graph(client, "\n".join(lines) + "\n")
    assert response.status_code == 200, response.text
    assert response.json()["services"] == 10_000
    assert response.json()["cycles"] == []
    one = client.get("/api/v1/services/svc-00042", headers=AUTH)
    assert one.status_code == 200
    body = one.json()
    assert body["dependencies"] == ["svc-00010"]
    assert body["dependents"] == [f"svc-{n:05d}" for n in range(169, 173)]
    assert "svc-00000" not in body["blast_radius"]
    assert len(client.get(GRAPH, headers=AUTH).json()["services"]) == 10_000
