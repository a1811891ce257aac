"""Ingestion semantics on SQLite and PostgreSQL: storage, dedup, ordering, auth."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.db import create_db_engine
from incidents.ingest.fingerprint import label_fingerprint
from tests.conftest import AUTH, TOKEN
from tests.factories import am_alert, am_payload

T0 = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
WEBHOOK = "/api/v1/alerts/alertmanager"


def post(client: TestClient, body: Any, path: str = WEBHOOK, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, content=data, headers={**AUTH, **headers})


def alerts(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/alerts", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def count_rows(db_url: str, table: str) -> int:
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        n = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return int(n)


def test_alertmanager_payload_is_stored_with_severity_and_service(client: TestClient) -> None:
    labels = {"alertname": "HighErrorRate", "severity": "critical", "service": "api-gateway"}
    response = post(client, am_payload([am_alert(labels, starts_at=T0)]))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    [stored] = alerts(client)
    assert stored["fingerprint"] == label_fingerprint(labels)
    assert stored["status"] == "firing"
    assert stored["severity"] == "P0"
    assert stored["service"] == "api-gateway"
    assert stored["labels"] == labels
    assert stored["starts_at"] == "2026-11-23T05:00:00Z"
    assert stored["ends_at"] is None
    assert stored["receive_count"] == 1
    assert stored["group_key"].startswith("{}:")
    one = client.get(f"/api/v1/alerts/{stored['fingerprint']}", headers=AUTH)
    assert one.status_code == 200
    assert one.json()["labels"] == labels


def test_resent_firing_alert_updates_last_received_and_count(client: TestClient) -> None:
    alert = am_alert({"alertname": "DiskFull", "service": "storage-s3"}, starts_at=T0)
    first = am_payload([alert])
    assert post(client, first).status_code == 200
    # A later notification of the same group (another alert joined it): a new delivery.
    other = am_alert({"alertname": "DiskFull", "service": "cache-redis"}, starts_at=T0)
    assert post(client, am_payload([alert, other])).status_code == 200
    stored = {a["labels"]["service"]: a for a in alerts(client)}
    assert len(stored) == 2
    assert stored["storage-s3"]["receive_count"] == 2
    assert stored["cache-redis"]["receive_count"] == 1
    assert stored["storage-s3"]["last_received"] >= stored["storage-s3"]["first_received"]


def test_identical_delivery_twice_counts_once(client: TestClient, db_url: str) -> None:
    body = am_payload([am_alert({"alertname": "A", "instance": "i1"}, starts_at=T0)])
    first = post(client, body)
    # An HA peer sends the same notification with its own external URL.
    twin = dict(body, externalURL="http://alertmanager-2.example:9093")
    second = post(client, twin)
    assert first.json()["status"] == "accepted"
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    [stored] = alerts(client)
    assert stored["receive_count"] == 1
    assert count_rows(db_url, "webhook_deliveries") == 2  # both raw bodies are kept
    assert count_rows(db_url, "pipeline_jobs") == 1


def test_resolve_sets_ends_at_and_status(client: TestClient) -> None:
    labels = {"alertname": "Latency", "service": "user-service", "severity": "warning"}
    post(client, am_payload([am_alert(labels, starts_at=T0)]))
    resolved = am_alert(labels, status="resolved", starts_at=T0, ends_at=T0 + timedelta(minutes=7))
    assert post(client, am_payload([resolved])).status_code == 200
    [stored] = alerts(client)
    assert stored["status"] == "resolved"
    assert stored["ends_at"] == "2026-11-23T05:07:00Z"
    assert stored["severity"] == "P2"
    assert alerts(client, status="firing") == []


def test_out_of_order_older_delivery_never_overwrites_newer_state(client: TestClient) -> None:
    labels = {"alertname": "Latency", "service": "user-service"}
    resolved = am_alert(labels, status="resolved", starts_at=T0, ends_at=T0 + timedelta(minutes=3))
    firing = am_alert(labels, starts_at=T0, annotations={"summary": "old"})
    assert post(client, am_payload([resolved])).status_code == 200
    assert post(client, am_payload([firing])).status_code == 200  # arrives late
    [stored] = alerts(client)
    assert stored["status"] == "resolved"
    assert stored["ends_at"] == "2026-11-23T05:03:00Z"
    assert stored["receive_count"] == 2
    # A genuinely new episode (starts after the resolve) does fire again.
    again = am_alert(labels, starts_at=T0 + timedelta(minutes=10))
    post(client, am_payload([again]))
    [stored] = alerts(client)
    assert stored["status"] == "firing"
    assert stored["starts_at"] == "2026-11-23T05:10:00Z"
    assert stored["ends_at"] is None


def test_same_fingerprint_twice_in_one_body_is_one_row(client: TestClient) -> None:
    labels = {"alertname": "Dup", "service": "x"}
    body = am_payload(
        [
            am_alert(labels, starts_at=T0),
            am_alert(labels, status="resolved", starts_at=T0, ends_at=T0 + timedelta(minutes=1)),
        ]
    )
    assert post(client, body).status_code == 200
    [stored] = alerts(client)
    assert stored["status"] == "resolved"
    assert stored["receive_count"] == 2


def test_unknown_extra_fields_are_accepted_and_kept(client: TestClient, db_url: str) -> None:
    alert = am_alert({"alertname": "New", "service": "x"}, starts_at=T0)
    alert["silencedBy"] = ["abc"]
    body = am_payload([alert])
    body["newTopLevelField"] = {"nested": True}
    response = post(client, body)
    assert response.status_code == 200, response.text
    [stored] = alerts(client)
    assert stored["extra"] == {"silencedBy": ["abc"]}
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT body FROM webhook_deliveries")).scalar_one()
    engine.dispose()
    assert orjson.loads(raw)["newTopLevelField"] == {"nested": True}


def test_generic_alerts_get_prometheus_fingerprints(client: TestClient) -> None:
    labels = {"alertname": "QueueBacklog", "app": "feedback-service", "severity": "high"}
    body = [
        {"labels": labels, "annotations": {"summary": "x"}, "starts_at": "2026-11-23T05:00:00Z"}
    ]
    response = post(client, body, path="/api/v1/alerts")
    assert response.status_code == 200, response.text
    [stored] = alerts(client)
    assert stored["fingerprint"] == label_fingerprint(labels)
    assert stored["source"] == "generic"
    assert stored["severity"] == "P1"
    assert stored["service"] == "feedback-service"
    # The envelope form, with an explicit fingerprint and a resolve.
    body2 = {
        "alerts": [
            {
                "labels": labels,
                "fingerprint": stored["fingerprint"],
                "status": "resolved",
                "starts_at": "2026-11-23T05:00:00Z",
                "ends_at": "2026-11-23T05:30:00Z",
            }
        ]
    }
    assert post(client, body2, path="/api/v1/alerts").status_code == 200
    [stored] = alerts(client)
    assert stored["status"] == "resolved"
    assert stored["ends_at"] == "2026-11-23T05:30:00Z"


def test_generic_alert_without_start_keeps_its_first_start(client: TestClient) -> None:
    labels = {"alertname": "NoStart", "service": "x"}
    post(client, [{"labels": labels, "annotations": {"n": "1"}}], path="/api/v1/alerts")
    [first] = alerts(client)
    post(client, [{"labels": labels, "annotations": {"n": "2"}}], path="/api/v1/alerts")
    [second] = alerts(client)
    assert second["starts_at"] == first["starts_at"]
    assert second["receive_count"] == 2
    assert second["annotations"] == {"n": "2"}


def test_fingerprint_matches_prometheus_reference() -> None:
    # The empty set hashes to FNV-1a's offset basis; tests/e2e compares real Alertmanager's.
    assert label_fingerprint({}) == "cbf29ce484222325"
    assert label_fingerprint({"b": "2", "a": "1"}) == label_fingerprint({"a": "1", "b": "2"})
    assert label_fingerprint({"a": "b"}) != label_fingerprint({"a": "c"})
    # The separator keeps name/value boundaries apart.
    assert label_fingerprint({"ab": "c"}) != label_fingerprint({"a": "bc"})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic " + base64.b64encode(b"am:wrong").decode()},
        {"Authorization": "Basic %%%"},
        {"Authorization": "Token test-token"},
    ],
)
def test_missing_or_wrong_credentials_get_401(client: TestClient, headers: dict[str, str]) -> None:
    body = orjson.dumps(am_payload([am_alert({"alertname": "A"})]))
    response = client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert client.get("/api/v1/alerts", headers=headers).status_code == 401


def test_basic_auth_with_the_token_as_password_is_accepted(client: TestClient) -> None:
    body = orjson.dumps(am_payload([am_alert({"alertname": "A"})]))
    basic = "Basic " + base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()
    response = client.post(WEBHOOK, content=body, headers={"Authorization": basic})
    assert response.status_code == 200, response.text
