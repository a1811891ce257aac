"""Refused keys are counted, logged (rate-limited) and challenged; /readyz hides its detail."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable

import orjson
import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from incidents.api.app import create_app
from incidents.api.auth import RefusalLog
from incidents.api.deps import check_token
from incidents.exceptions import Unauthorized
from tests.conftest import AUTH, TOKEN, make_settings
from tests.factories import am_alert, am_payload

WEBHOOK = "/api/v1/alerts/alertmanager"
SECRET = "not-the-right-token-9f3a"


def rejected(source: str, status: str) -> float:
    """The current value of incidents_ingest_rejected_total for one label pair."""
    value = REGISTRY.get_sample_value(
        "incidents_ingest_rejected_total", {"source": source, "status": status}
    )
    return value or 0.0


def basic(password: str) -> dict[str, str]:
    """An Authorization header for basic auth with any user name."""
    encoded = base64.b64encode(f"alertmanager:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def auth_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The refused-credentials lines logged so far."""
    return [r for r in caplog.records if r.name == "incidents.auth"]


def test_refused_keys_are_counted_by_source_and_challenged(client: TestClient) -> None:
    body = orjson.dumps(am_payload([am_alert({"alertname": "A"})]))
    before = {
        "alertmanager": rejected("alertmanager", "401"),
        "generic": rejected("generic", "401"),
        "api": rejected("api", "401"),
    }
    wrong_bearer = {"Authorization": f"Bearer {SECRET}"}
    for _ in range(2):
        response = client.post(WEBHOOK, content=body, headers=wrong_bearer)
        assert response.status_code == 401
        assert response.headers.get_list("www-authenticate") == [
            'Bearer realm="incidents"',
            'Basic realm="incidents", charset="UTF-8"',
        ]
        assert response.json()["error"] == "unauthorized"
    assert client.post("/api/v1/alerts", content=b"[]", headers=basic(SECRET)).status_code == 401
    assert client.get("/api/v1/incidents").status_code == 401
    assert client.get("/api/v1/incidents", headers=basic(TOKEN)).status_code == 200
    assert client.post(WEBHOOK, content=body, headers=AUTH).status_code == 200
    assert rejected("alertmanager", "401") == before["alertmanager"] + 2
    assert rejected("generic", "401") == before["generic"] + 1
    assert rejected("api", "401") == before["api"] + 1
    metrics = client.get("/metrics").text
    assert 'incidents_ingest_rejected_total{source="alertmanager",status="401"}' in metrics


def test_a_refusal_is_logged_with_address_path_and_scheme_never_the_secret(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="incidents.auth")
    response = client.post(WEBHOOK, content=b"{}", headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 401
    [line] = auth_lines(caplog)
    assert line.levelno == logging.WARNING
    text = line.getMessage()
    assert "testclient" in text and WEBHOOK in text and "bearer" in text
    assert line.client == "testclient"  # type: ignore[attr-defined]
    assert line.scheme == "bearer"  # type: ignore[attr-defined]
    assert line.status == 401  # type: ignore[attr-defined]
    assert SECRET not in text and SECRET not in str(vars(line))


def test_refusal_lines_are_rate_limited_per_address(
    sqlite_url: str,
    client_for: Callable[..., TestClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="incidents.auth")
    client = client_for(sqlite_url, http={"auth_log_interval_seconds": 3600})
    before = rejected("api", "401")
    for _ in range(50):
        assert client.get("/api/v1/alerts", headers=basic(SECRET)).status_code == 401
    assert len(auth_lines(caplog)) == 1
    assert rejected("api", "401") == before + 50  # the counter misses none


def test_the_suppressed_count_reaches_the_next_line() -> None:
    now = [1000.0]
    refusals = RefusalLog(60.0, clock=lambda: now[0])
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("incidents.auth")
    logger.addHandler(handler)
    try:
        for _ in range(5):
            refusals.record(401, "10.0.0.1", "POST", WEBHOOK, "basic")
        refusals.record(401, "10.0.0.2", "POST", WEBHOOK, "none")  # another address
        now[0] += 59
        refusals.record(401, "10.0.0.1", "POST", WEBHOOK, "basic")
        now[0] += 2
        refusals.record(403, "10.0.0.1", "GET", "/api/v1/incidents", "bearer")
    finally:
        logger.removeHandler(handler)
    assert len(logged) == 3
    assert "10.0.0.1" in logged[0] and "0 similar lines suppressed" in logged[0]
    assert "10.0.0.2" in logged[1]
    assert "(403)" in logged[2] and "5 similar lines suppressed" in logged[2]


def test_check_token_still_guards_a_request_the_middleware_did_not_see(db_url: str) -> None:
    app = create_app(make_settings(db_url))

    def request_with(headers: dict[str, str]) -> Request:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        return Request({"type": "http", "app": app, "headers": raw, "state": {}})

    async def run() -> None:
        await check_token(request_with(AUTH))
        await check_token(request_with(basic(TOKEN)))
        for headers in ({}, {"Authorization": f"Bearer {SECRET}"}, {"Authorization": "Basic %%"}):
            with pytest.raises(Unauthorized):
                await check_token(request_with(headers))

    asyncio.run(run())


def test_readyz_shows_detail_only_with_the_key(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    # Nothing listens on port 9: the broker check fails with an error naming host and port.
    client = client_for(sqlite_url, broker_url="redis://127.0.0.1:9/0")
    for headers in ({}, {"Authorization": f"Bearer {SECRET}"}):
        anonymous = client.get("/readyz", headers=headers)
        assert anonymous.status_code == 503
        assert anonymous.json() == {
            "status": "unavailable",
            "checks": {"database": {"status": "ok"}, "broker": {"status": "down"}},
        }
        assert "127.0.0.1" not in anonymous.text
    detailed = client.get("/readyz", headers=AUTH)
    assert detailed.status_code == 503
    checks = detailed.json()["checks"]
    assert "127.0.0.1:9" in checks["broker"]["error"]
    assert checks["broker"]["latency_ms"] >= 0
    assert checks["database"]["latency_ms"] >= 0


def test_without_a_bootstrap_token_only_keys_are_accepted(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    # No INCIDENTS_API_TOKEN no longer means "open to anyone": a key is still required.
    client = client_for(sqlite_url, api_token="")
    assert client.get("/api/v1/incidents").status_code == 401
    assert client.get("/api/v1/incidents", headers={"Authorization": "Bearer "}).status_code == 401
    checks = client.get("/readyz").json()["checks"]
    assert checks == {"database": {"status": "ok"}, "broker": {"status": "ok"}}
