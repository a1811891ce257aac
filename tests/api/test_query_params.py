"""Query and path parameters: unknown ones, out-of-range ids and times, NUL characters.

Each case once reached the database and came back as a 500 or a 503 "retry"; each must
be a 422 that names the parameter, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import AUTH


def _refused(client: TestClient, url: str, field: str, **params: object) -> dict[str, object]:
    response = client.get(url, params=params, headers=AUTH)
    assert response.status_code == 422, (url, params, response.text)
    assert "Retry-After" not in response.headers
    body: dict[str, object] = response.json()
    assert body["field"] == field, body
    return body


@pytest.mark.parametrize(
    ("url", "takes"),
    [
        ("/api/v1/alerts", "cursor, filter, limit, service, severity, status"),
        ("/api/v1/incidents", "cursor, limit, service, severity, since, status, until"),
        ("/api/v1/silences", "state"),
    ],
)
def test_unknown_query_parameter_is_422_naming_it(client: TestClient, url: str, takes: str) -> None:
    body = _refused(client, url, "serivce", serivce="api-gateway")
    assert "'serivce'" in str(body["message"])
    # The message lists what the operation does take, so the typo is easy to fix.
    assert str(body["message"]).endswith(f"takes: {takes}")


def test_every_unknown_parameter_is_listed(client: TestClient) -> None:
    body = _refused(client, "/api/v1/alerts", "limt", limt="5", stauts="firing", service="x")
    errors = body["errors"]
    assert isinstance(errors, list)
    assert [e["field"] for e in errors] == ["limt", "stauts"]


def test_known_parameters_still_work(client: TestClient) -> None:
    for url, params in [
        ("/api/v1/alerts", {"service": "x", "severity": ["P0", "P1"], "limit": "5"}),
        ("/api/v1/incidents", {"status": "open", "since": "2026-01-01T00:00:00Z"}),
        ("/api/v1/silences", {"state": "all"}),
    ]:
        response = client.get(url, params=params, headers=AUTH)
        assert response.status_code == 200, (url, response.text)


def test_time_outside_the_utc_range_is_422(client: TestClient) -> None:
    # Valid ISO 8601, but the UTC instant is before year 1 or after year 9999.
    for name, value in [
        ("since", "0001-01-01T00:03:00+01:05"),
        ("until", "9999-12-31T23:59:00-01:00"),
    ]:
        body = _refused(client, "/api/v1/incidents", name, **{name: value})
        assert "out of range" in str(body["message"])


def test_times_are_compared_in_utc(client: TestClient) -> None:
    # 00:30+01:00 is 23:30 UTC the day before: `until` at 23:45Z is after it.
    response = client.get(
        "/api/v1/incidents",
        params={"since": "2026-01-02T00:30:00+01:00", "until": "2026-01-01T23:45:00Z"},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    _refused(
        client,
        "/api/v1/incidents",
        "until",
        since="2026-01-02T00:30:00+01:00",
        until="2026-01-01T23:15:00Z",
    )


def test_incident_id_outside_the_column_range_is_422(client: TestClient) -> None:
    # Incident ids are int4 on PostgreSQL: 2**31 once came back as 503 "database unavailable".
    for incident_id in [2**31, 2**63, 10**30, 0, -1]:
        body = _refused(client, f"/api/v1/incidents/{incident_id}", "incident_id")
        assert body["error"] == "validation_error"
    largest = client.get(f"/api/v1/incidents/{2**31 - 1}", headers=AUTH)
    assert largest.status_code == 404
    assert largest.json()["field"] == "incident_id"


def test_cursor_outside_the_id_range_is_422(client: TestClient) -> None:
    for url in ["/api/v1/alerts", "/api/v1/incidents"]:
        for cursor in [str(2**31), "9999999999", "0", "99999999999999999999"]:
            _refused(client, url, "cursor", cursor=cursor)
        assert client.get(url, params={"cursor": str(2**31 - 1)}, headers=AUTH).status_code == 200


def test_nul_in_a_parameter_is_422_naming_it(client: TestClient) -> None:
    for url, params, field in [
        ("/api/v1/alerts", {"service": "a\x00b"}, "service"),
        ("/api/v1/incidents", {"service": "\x00"}, "service"),
        ("/api/v1/alerts", {"filter": 'alertname="\x00"'}, "filter"),
        ("/api/v1/alerts/ab%00cd", {}, "fingerprint"),
        ("/api/v1/silences/ab%00cd", {}, "silence_id"),
    ]:
        body = _refused(client, url, field, **params)
        assert "NUL" in str(body["message"])


def test_unknown_parameters_are_checked_after_the_token(client: TestClient) -> None:
    response = client.get("/api/v1/alerts", params={"serivce": "x"})
    assert response.status_code == 401
