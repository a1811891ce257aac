"""The service graph API, silences and maintenance windows, inhibition and flapping."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
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


# -- silences and maintenance windows ----------------------------------------------------------


def test_silence_lifecycle_create_list_read_expire(client: TestClient) -> None:
    created = silence(client, matchers='alertname="DiskFull", service=~"storage-.*"')
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["state"] == "active"
    assert first["matchers"] == ['alertname="DiskFull"', 'service=~"storage-.*"']
    assert first["created_by"] == "alice"
    as_list = silence(client, matchers=['severity="warning"', "team!=ml"])
    assert as_list.status_code == 201, as_list.text
    second = as_list.json()
    assert second["matchers"] == ['severity="warning"', 'team!="ml"']
    later = silence(
        client,
        matchers=["alertname=Later"],
        starts_at=iso(utcnow() + timedelta(hours=1)),
        ends_at=iso(utcnow() + timedelta(hours=2)),
    )
    assert later.status_code == 201, later.text
    assert later.json()["state"] == "pending"

    listed = client.get(SILENCES, headers=AUTH).json()
    assert {s["id"] for s in listed} == {first["id"], second["id"], later.json()["id"]}
    active = client.get(SILENCES, params={"state": "active"}, headers=AUTH).json()
    assert {s["id"] for s in active} == {first["id"], second["id"]}
    one = client.get(f"{SILENCES}/{first['id']}", headers=AUTH)
    assert one.status_code == 200
    assert one.json() == first

    expired = client.delete(f"{SILENCES}/{first['id']}", headers=AUTH)
    assert expired.status_code == 200, expired.text
    assert expired.json()["state"] == "expired"
    assert client.get(f"{SILENCES}/{first['id']}", headers=AUTH).json()["state"] == "expired"
    default = client.get(SILENCES, headers=AUTH).json()
    assert first["id"] not in {s["id"] for s in default}
    old = client.get(SILENCES, params={"state": "expired"}, headers=AUTH).json()
    assert [(s["id"], s["state"]) for s in old] == [(first["id"], "expired")]
    everything = client.get(SILENCES, params={"state": "all"}, headers=AUTH).json()
    assert len(everything) == 3
    # Expiring twice is harmless; an unknown id is 404.
    assert client.delete(f"{SILENCES}/{first['id']}", headers=AUTH).status_code == 200
    assert client.get(f"{SILENCES}/nope", headers=AUTH).status_code == 404
    assert client.delete(f"{SILENCES}/nope", headers=AUTH).status_code == 404


def test_expiring_a_pending_silence_expires_it(client: TestClient) -> None:
    created = silence(
        client,
        matchers=["alertname=Later"],
        starts_at=iso(utcnow() + timedelta(hours=1)),
        ends_at=iso(utcnow() + timedelta(hours=2)),
    )
    assert created.status_code == 201, created.text
    silence_id = created.json()["id"]
    expired = client.delete(f"{SILENCES}/{silence_id}", headers=AUTH)
    assert expired.status_code == 200
    assert expired.json()["state"] == "expired"
    assert client.get(SILENCES, headers=AUTH).json() == []
    old = client.get(SILENCES, params={"state": "expired"}, headers=AUTH).json()
    assert [s["id"] for s in old] == [silence_id]


def test_silence_times_without_a_zone_are_not_a_server_error(client: TestClient) -> None:
    ends = (utcnow() + timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    response = silence(client, matchers=["alertname=A"], ends_at=ends.isoformat())
    # Taken as UTC (as stored times are), or refused naming the field; never a 500.
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        assert response.json()["ends_at"] == iso(ends.replace(tzinfo=utcnow().tzinfo))
        assert response.json()["state"] == "active"
    else:
        assert response.json()["field"] == "ends_at"


def test_silenced_alert_is_kept_but_opens_no_incident_until_the_silence_ends(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    # A short upkeep interval: the upkeep that un-mutes alerts runs within the test.
    pipe = Pipeline(client_for(db_url, pipeline={"upkeep_interval_seconds": 0.2}), db_url)
    try:
        pipe.load_graph()
        created = silence(pipe.client, matchers=['alertname="DiskFull"'])
        assert created.status_code == 201, created.text
        silence_id = created.json()["id"]
        [muted] = pipe.post(alert("storage-s3", "DiskFull", recent(5)))
        stored = pipe.alert_row(muted)
        assert stored["status"] == "firing"
        assert stored["silenced_by"] == [silence_id]
        assert pipe.incidents() == []

        # Another alert of the same service is not covered by this silence.
        [loud] = pipe.post(alert("storage-s3", "BucketErrors", recent(4)))
        [incident] = pipe.incidents()
        assert incident["alert_fingerprints"] == [loud]
        time.sleep(0.5)  # a few upkeep rounds: the silence still holds
        assert pipe.alert_row(muted)["silenced_by"] == [silence_id]
        assert pipe.incidents()[0]["alert_fingerprints"] == [loud]

        # Once the silence is expired, the alert that still fires joins like any other.
        assert pipe.client.delete(f"{SILENCES}/{silence_id}", headers=AUTH).status_code == 200
        [fresh] = pipe.post(alert("storage-s3", "DiskFull", recent(2), instance="s3-b"))
        assert pipe.alert_row(fresh)["silenced_by"] == []
        deadline = time.monotonic() + 10
        while pipe.alert_row(muted)["silenced_by"] and time.monotonic() < deadline:
            time.sleep(0.05)
        pipe.wait()
        assert pipe.alert_row(muted)["silenced_by"] == []
        [incident] = pipe.incidents()
        assert sorted(incident["alert_fingerprints"]) == sorted([loud, fresh, muted])
    finally:
        pipe.close()


def test_maintenance_window_mutes_every_alert_of_its_service(pipe: Pipeline) -> None:
    pipe.load_graph()
    window = silence(pipe.client, service="database-postgres", comment="upgrade to 16")
    assert window.status_code == 201, window.text
    assert window.json()["matchers"] == []
    assert window.json()["service"] == "database-postgres"

    db_alerts = pipe.post(
        alert("database-postgres", "PostgresDown", recent(5), "P0"),
        alert("database-postgres", "ReplicationLag", recent(5), "P2"),
    )
    for fingerprint in db_alerts:
        assert pipe.alert_row(fingerprint)["silenced_by"] == [window.json()["id"]]
    assert pipe.incidents() == []
    [other] = pipe.post(alert("user-service", "LoginErrors", recent(4)))
    [incident] = pipe.incidents()
    assert incident["alert_fingerprints"] == [other]
    service = pipe.client.get("/api/v1/services/database-postgres", headers=AUTH).json()
    assert [w["id"] for w in service["maintenance_windows"]] == [window.json()["id"]]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"matchers": ["alertname"]}, "matchers[0]", "expected one of"),
        ({"matchers": ['a="1"', "b~x"]}, "matchers[1]", "expected one of"),
        ({"matchers": 'alertname=~"(unclosed"'}, "matchers[0]", "regular expression"),
        (
            {
                "matchers": ["alertname=A"],
                "starts_at": "2031-01-02T00:00:00Z",
                "ends_at": "2031-01-01T00:00:00Z",
            },
            "ends_at",
            "after starts_at",
        ),
        ({"matchers": ["alertname=A"], "ends_at": "2020-01-01T00:00:00Z"}, "ends_at", "after"),
        ({"service": "no-such-service"}, "service", "no-such-service"),
        ({"matchers": ["alertname=A"], "created_by": None}, "created_by", "required"),
        ({"matchers": []}, "matchers", "matcher"),
        ({"matchers": ['team=~".*"', 'env=""']}, "matchers", "mute everything"),
        ({"matchers": ["alertname=A"], "ends_at": None}, "ends_at", "required"),
        ({"matchers": ["alertname=A"], "until": "tomorrow"}, "until", "not permitted"),
    ],
)
def test_bad_silence_is_422_naming_the_field(
    pipe: Pipeline, fields: dict[str, Any], field: str, words: str
) -> None:
    pipe.load_graph()
    response = silence(pipe.client, **fields)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert words.lower() in error["message"].lower()
    assert pipe.client.get(SILENCES, params={"state": "all"}, headers=AUTH).json() == []


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
