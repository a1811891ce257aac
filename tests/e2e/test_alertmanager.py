"""End to end against the real Prometheus Alertmanager binary.

Alertmanager receives alerts on its own API and delivers its webhook to our service, which
runs as a subprocess on a throwaway SQLite database. A small in-process HTTP server takes a
copy of every notification, so a failure shows what Alertmanager actually sent.

Everything listens on 127.0.0.1 only; Alertmanager's HA gossip is switched off.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from incidents.ingest.fingerprint import label_fingerprint
from tests.e2e.processes import (
    DELIVERY_TIMEOUT,
    HOOK_PATH,
    Alertmanager,
    am_alert,
    parse_time,
    rfc3339,
    unique,
    wait_for,
)

pytestmark = pytest.mark.alertmanager


# --- tests ---


def test_firing_then_resolved_through_real_alertmanager(alertmanager: Alertmanager) -> None:
    am, svc = alertmanager, alertmanager.service
    name = unique("E2EHighErrorRate")
    gateway = {"alertname": name, "severity": "critical", "service": "api-gateway", "env": "e2e"}
    redis = {"alertname": name, "severity": "warning", "service": "cache-redis", "env": "e2e"}
    am.post([am_alert(gateway), am_alert(redis)])

    def both_firing() -> list[dict[str, Any]] | None:
        items = svc.alerts(name)
        if len(items) == 2 and all(i["status"] == "firing" for i in items):
            return items
        return None

    items = wait_for("two firing alerts in our API", both_firing, DELIVERY_TIMEOUT, am.diagnostics)
    by_service = {i["service"]: i for i in items}
    assert set(by_service) == {"api-gateway", "cache-redis"}, items
    assert by_service["api-gateway"]["labels"] == gateway
    assert by_service["api-gateway"]["severity"] == "P0"
    assert by_service["cache-redis"]["labels"] == redis
    assert by_service["cache-redis"]["severity"] == "P2"
    for item in items:
        assert item["ends_at"] is None, item
        assert item["source"] == "alertmanager"
        assert item["annotations"]["summary"].startswith(name)
        assert item["generator_url"] == "http://prometheus.example/graph?g0.expr=up"

    # Our fingerprints are Alertmanager's, and equal to the Prometheus label hash.
    theirs = {a["labels"]["service"]: a["fingerprint"] for a in am.alerts(name)}
    ours = {svc_name: i["fingerprint"] for svc_name, i in by_service.items()}
    assert ours == theirs, am.diagnostics()
    assert ours["api-gateway"] == label_fingerprint(gateway)
    assert ours["cache-redis"] == label_fingerprint(redis)
    for fingerprint in ours.values():
        one = svc.client.get(f"/api/v1/alerts/{fingerprint}")
        assert one.status_code == 200, one.text
        assert one.json()["fingerprint"] == fingerprint

    # What Alertmanager sent: payload version 4, its own fingerprints, its startsAt.
    firing_payloads = [c for c in am.capture.payloads(name) if c.json()["status"] == "firing"]
    assert len(firing_payloads) == 1, am.diagnostics()
    payload = firing_payloads[0].json()
    assert payload["version"] == "4"
    assert payload["receiver"] == "incidents"
    sent_alerts = {a["labels"]["service"]: a for a in payload["alerts"]}
    assert {k: a.get("fingerprint") for k, a in sent_alerts.items()} == ours
    for svc_name, item in by_service.items():
        their_start = parse_time(sent_alerts[svc_name]["startsAt"])
        assert abs(parse_time(item["starts_at"]) - their_start) < timedelta(milliseconds=1)

    # Resolve: the same alerts with an end in the past.
    resolved_at = parse_time(rfc3339(datetime.now(UTC) - timedelta(seconds=1)))
    am.post([am_alert(gateway, ends_at=resolved_at), am_alert(redis, ends_at=resolved_at)])

    def both_resolved() -> list[dict[str, Any]] | None:
        items = svc.alerts(name)
        if len(items) == 2 and all(i["status"] == "resolved" for i in items):
            return items
        return None

    items = wait_for(
        "two resolved alerts in our API", both_resolved, DELIVERY_TIMEOUT, am.diagnostics
    )
    assert {i["fingerprint"] for i in items} == set(ours.values())
    for item in items:
        assert item["ends_at"] is not None, item
        # Alertmanager passes on the endsAt we gave it; we store exactly that.
        assert parse_time(item["ends_at"]) == resolved_at, (item, resolved_at)
        assert parse_time(item["starts_at"]) <= resolved_at, item


def test_resent_notifications_do_not_duplicate_rows(alertmanager: Alertmanager) -> None:
    am, svc = alertmanager, alertmanager.service
    name = unique("E2EDiskFull")
    first = {"alertname": name, "severity": "warning", "service": "cache-redis", "disk": "sda"}
    second = {"alertname": name, "severity": "warning", "service": "cache-redis", "disk": "sdb"}
    third = {"alertname": name, "severity": "critical", "service": "api-gateway", "disk": "sdc"}
    am.post([am_alert(first), am_alert(second)])

    def stored(count: int) -> Callable[[], list[dict[str, Any]] | None]:
        def probe() -> list[dict[str, Any]] | None:
            items = svc.alerts(name)
            return items if len(items) == count else None

        return probe

    wait_for("the first two alerts", stored(2), DELIVERY_TIMEOUT, am.diagnostics)

    # A new alert in the same group: Alertmanager re-sends the whole group, the first two again.
    am.post([am_alert(third)])
    wait_for("the third alert", stored(3), DELIVERY_TIMEOUT, am.diagnostics)

    def group_resent() -> list[dict[str, Any]] | None:
        items = svc.alerts(name)
        counts = {i["labels"]["disk"]: i["receive_count"] for i in items}
        return items if counts.get("sda", 0) >= 2 and counts.get("sdb", 0) >= 2 else None

    items = wait_for("the re-sent group to be counted", group_resent, 10, am.diagnostics)
    # Two notifications (2 alerts, then all 3): one row per distinct alert, counted per receipt.
    sizes = [len(c.json()["alerts"]) for c in am.capture.payloads(name)]
    assert sizes == [2, 3], (sizes, am.diagnostics())
    assert len(items) == 3, items
    counts = {i["fingerprint"]: i["receive_count"] for i in items}
    assert counts == {
        label_fingerprint(first): 2,
        label_fingerprint(second): 2,
        label_fingerprint(third): 1,
    }, items

    # Replaying a notification byte for byte (a retry after a lost response) stores nothing.
    last = am.capture.payloads(name)[-1]
    before = {i["fingerprint"]: i["receive_count"] for i in svc.alerts(name)}
    replay = svc.client.post(
        HOOK_PATH, content=last.body, headers={"content-type": "application/json"}
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "duplicate", replay.json()
    after = {i["fingerprint"]: i["receive_count"] for i in svc.alerts(name)}
    assert after == before


def test_wrong_token_stores_nothing(alertmanager: Alertmanager) -> None:
    am, svc = alertmanager, alertmanager.service
    name = unique("E2EIntruder")
    labels = {"alertname": name, "severity": "critical", "service": "api-gateway"}
    am.post([am_alert({**labels, "route": "wrong-token"})])

    # The capture server sits in the same receiver: once it has the notification,
    # Alertmanager has tried our endpoint with the wrong token as well.
    wait_for(
        "the wrong-token receiver to notify",
        lambda: am.capture.payloads(name) or None,
        DELIVERY_TIMEOUT,
        am.diagnostics,
    )

    def rejected() -> bool | None:
        text = am.client.get("/metrics").text
        for line in text.splitlines():
            if (
                line.startswith("alertmanager_notifications_failed_total")
                and 'integration="webhook"' in line
                and float(line.rsplit(" ", 1)[1]) >= 1
            ):
                return True
        return None

    wait_for("Alertmanager to count a failed webhook", rejected, 10, am.diagnostics)
    assert am.capture.payloads(name)[0].json()["receiver"] == "wrong-token"
    assert svc.alerts(name) == []
    unknown = svc.client.get(
        f"/api/v1/alerts/{label_fingerprint({**labels, 'route': 'wrong-token'})}"
    )
    assert unknown.status_code == 404, unknown.text
