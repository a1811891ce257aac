"""The alerts read API: filters, label matchers and cursor pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from fastapi.testclient import TestClient

from tests.conftest import AUTH
from tests.factories import am_alert, am_payload

T0 = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


def _seed(client: TestClient) -> None:
    alerts = []
    for i in range(30):
        labels = {
            "alertname": "HighLatency" if i % 2 else "DiskFull",
            "service": ["api-gateway", "user-service", "cache-redis"][i % 3],
            "severity": ["critical", "warning", "info"][i % 3],
            "instance": f"host-{i:02d}",
        }
        status = "resolved" if i % 5 == 0 else "firing"
        alerts.append(
            am_alert(labels, status=status, starts_at=T0, ends_at=T0 + timedelta(minutes=1))
        )
    body = am_payload(alerts)
    response = client.post("/api/v1/alerts/alertmanager", content=orjson.dumps(body), headers=AUTH)
    assert response.status_code == 200


def _get(client: TestClient, **params: object) -> dict[str, object]:
    response = client.get("/api/v1/alerts", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def _items(data: dict[str, object]) -> list[dict[str, object]]:
    items = data["items"]
    assert isinstance(items, list)
    return items


def test_filters(client: TestClient) -> None:
    _seed(client)
    assert len(_items(_get(client, limit=1000))) == 30
    resolved = _items(_get(client, status="resolved"))
    assert len(resolved) == 6 and all(a["status"] == "resolved" for a in resolved)
    p0 = _items(_get(client, severity="P0"))
    assert len(p0) == 10 and all(a["severity"] == "P0" for a in p0)
    p0p2 = _items(_get(client, severity=["P0", "P2"]))
    assert len(p0p2) == 20
    cache = _items(_get(client, service="cache-redis"))
    assert {a["service"] for a in cache} == {"cache-redis"} and len(cache) == 10


def test_label_matchers(client: TestClient) -> None:
    _seed(client)
    eq = _items(_get(client, filter='alertname="DiskFull"'))
    assert len(eq) == 15
    regex = _items(_get(client, filter='instance=~"host-0[0-4]"'))
    assert sorted(a["labels"]["instance"] for a in regex) == [f"host-0{i}" for i in range(5)]  # type: ignore[index]
    combined = _items(_get(client, filter=['{alertname="DiskFull", service!="api-gateway"}']))
    assert combined and all(
        a["labels"]["alertname"] == "DiskFull" and a["service"] != "api-gateway"  # type: ignore[index]
        for a in combined
    )
    neg = _items(_get(client, filter='alertname!~"Disk.*"'))
    assert len(neg) == 15
    missing = _items(_get(client, filter='team=""'))  # an absent label matches ""
    assert len(missing) == 30


def _walk(client: TestClient, **params: object) -> list[str]:
    """Every fingerprint, following next_cursor page by page (at most 10 pages)."""
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        data = _get(client, **params, **({"cursor": cursor} if cursor else {}))
        seen.extend(str(a["fingerprint"]) for a in _items(data))
        cursor = data["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end within 10 pages")


def test_cursor_pagination_visits_every_alert_once(client: TestClient) -> None:
    _seed(client)
    seen = _walk(client, limit=7)
    assert len(seen) == 30 and len(set(seen)) == 30
    # Pagination with a matcher that skips rows.
    seen = _walk(client, limit=4, filter='alertname="HighLatency"')
    assert len(seen) == 15 and len(set(seen)) == 15
