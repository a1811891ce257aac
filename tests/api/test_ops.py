"""Health, readiness, metrics and structured request logs."""

from __future__ import annotations

import json
import logging

import orjson
import pytest
from fastapi.testclient import TestClient

from incidents.logging import JsonFormatter
from tests.conftest import AUTH
from tests.factories import am_alert, am_payload


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz", headers=AUTH)
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["database"]["latency_ms"] >= 0
    assert checks["broker"] == {"status": "ok", "kind": "embedded", "latency_ms": 0.0}


def test_metrics_count_ingested_alerts_and_normalise_paths(client: TestClient) -> None:
    body = am_payload(
        [
            am_alert({"alertname": "M1", "service": "x"}),
            am_alert({"alertname": "M2", "service": "x"}, status="resolved"),
        ]
    )
    client.post("/api/v1/alerts/alertmanager", content=orjson.dumps(body), headers=AUTH)
    fingerprint = body["alerts"][0]["fingerprint"]
    client.get(f"/api/v1/alerts/{fingerprint}", headers=AUTH)
    text = client.get("/metrics").text
    assert 'incidents_alerts_ingested_total{source="alertmanager",status="firing"}' in text
    assert 'incidents_alerts_ingested_total{source="alertmanager",status="resolved"}' in text
    assert 'path="/api/v1/alerts/{fingerprint}"' in text
    assert fingerprint not in text  # the raw path never becomes a label
    assert "incidents_http_request_duration_seconds_bucket" in text
    assert "incidents_pipeline_jobs_pending" in text
    assert "incidents_ingest_requests_waiting" in text


def test_request_id_on_every_log_line_of_a_request(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = client.post(
        "/api/v1/alerts/alertmanager",
        content=b"{not json",
        headers={**AUTH, "X-Request-ID": "req-abc-123"},
    )
    assert response.status_code == 400
    assert response.headers["x-request-id"] == "req-abc-123"
    access = [r for r in caplog.records if r.name == "incidents.access"]
    assert access, "no access log line"
    line = json.loads(JsonFormatter().format(access[-1]))
    assert line["request_id"] == "req-abc-123"
    assert line["status"] == 400
    assert line["level"] == "INFO"
    generated = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3 and all(len(g) == 24 for g in generated)
