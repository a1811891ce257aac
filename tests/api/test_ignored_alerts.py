"""Always-firing alerts (Watchdog, InfoInhibitor, `severity: none`) are stored and shown,
but open no incident, page no one and inhibit nothing. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_incidents import Pipeline, recent
from tests.conftest import AUTH
from tests.factories import am_alert

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kube_prometheus_alerts.json"
KUBE: dict[str, dict[str, str]] = json.loads(FIXTURES.read_text())


def kube_alert(name: str, **changes: Any) -> dict[str, Any]:
    """A webhook alert with the label set of a real kube-prometheus-stack alert."""
    return am_alert(dict(KUBE[name]), starts_at=recent(5), **changes)


def listed(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/alerts", headers=AUTH)
    assert response.status_code == 200, response.text
    return {a["labels"]["alertname"]: a for a in response.json()["items"]}


@pytest.fixture
def pipe(client: TestClient, db_url: str) -> Iterator[Pipeline]:
    p = Pipeline(client, db_url)
    yield p
    p.close()


def test_watchdog_and_severity_none_are_stored_and_shown_but_open_no_incident(
    pipe: Pipeline,
) -> None:
    heartbeat = am_alert(
        {"alertname": "BackupHeartbeat", "service": "backup", "severity": "none"},
        starts_at=recent(5),
    )
    [watchdog, inhibitor, _, crashloop] = pipe.post(
        kube_alert("Watchdog"),
        kube_alert("InfoInhibitor"),
        heartbeat,
        kube_alert("KubePodCrashLooping/deployment"),
    )

    [incident] = pipe.incidents()
    assert incident["alert_fingerprints"] == [crashloop]
    assert incident["services"] == ["checkout"]
    paging = [t for t in pipe.incident(incident["id"])["timeline"] if t["pages"]]
    assert [t["data"]["fingerprint"] for t in paging] == [crashloop]

    alerts = listed(pipe.client)
    assert alerts["Watchdog"]["ignored_by"] == 'alertname="Watchdog"'
    assert alerts["InfoInhibitor"]["ignored_by"] == 'alertname="InfoInhibitor"'
    assert alerts["BackupHeartbeat"]["ignored_by"] == 'severity="none"'
    assert alerts["KubePodCrashLooping"]["ignored_by"] is None
    assert alerts["Watchdog"]["status"] == "firing"
    assert pipe.alert_row(inhibitor)["ignored_by"] == 'alertname="InfoInhibitor"'

    # Its row keeps updating as Alertmanager re-sends it (the heartbeat feature reads it).
    first_seen = pipe.alert_row(watchdog)
    pipe.post(kube_alert("Watchdog", annotations={"summary": "alerting pipeline works"}))
    again = pipe.alert_row(watchdog)
    assert again["receive_count"] == first_seen["receive_count"] + 1
    assert again["last_received"] >= first_seen["last_received"]
    assert again["annotations"] == {"summary": "alerting pipeline works"}
    assert len(pipe.incidents()) == 1


def test_ignored_alerts_inhibit_nothing(db_url: str, client_for: Callable[..., TestClient]) -> None:
    # kube-prometheus-stack's own Alertmanager rule: InfoInhibitor mutes info alerts of its
    # namespace. Here InfoInhibitor is ignored, so it must not act as a source either.
    info_rule = {
        "source_matchers": ['alertname="InfoInhibitor"'],
        "target_matchers": ['severity="info"'],
        "equal": ["namespace"],
    }
    default_rule = {
        "source_matchers": ['__severity__="P0"'],
        "target_matchers": ['__severity__=~"P2|P3"'],
        "equal": ["__service__"],
    }
    client = client_for(
        db_url,
        correlation={"inhibit_rules": [info_rule, default_rule]},
        ingest={"ignore_alerts": ['alertname="InfoInhibitor"', 'alertname="LoadTest"']},
    )
    pipe = Pipeline(client, db_url)
    try:
        pipe.post(kube_alert("InfoInhibitor"))
        [throttled] = pipe.post(kube_alert("CPUThrottlingHigh"))
        # A critical alert that is ignored does not inhibit its service's warnings.
        load_test = {"alertname": "LoadTest", "service": "payments", "severity": "critical"}
        pipe.post(am_alert(load_test, starts_at=recent(6)))
        slow = {"alertname": "SlowPayments", "service": "payments", "severity": "warning"}
        [slow_fp] = pipe.post(am_alert(slow, starts_at=recent(5)))

        assert pipe.alert_row(throttled)["inhibited_by"] == []
        assert pipe.alert_row(slow_fp)["inhibited_by"] == []
        opened = {i["services"][0]: i["alert_fingerprints"] for i in pipe.incidents()}
        assert opened == {"checkout": [throttled], "payments": [slow_fp]}
        assert listed(client)["LoadTest"]["ignored_by"] == 'alertname="LoadTest"'
    finally:
        pipe.close()


def test_an_incident_opened_before_the_alert_was_ignored_is_left_behind(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    # Before the upgrade (or with an empty ignore list) the Watchdog opened an incident.
    before = client_for(db_url, ingest={"ignore_alerts": []})
    pipe = Pipeline(before, db_url)
    watchdog = {"alertname": "Watchdog", "prometheus": "monitoring/k8s"}
    try:
        pipe.post(am_alert(watchdog, starts_at=recent(60)))
        [incident] = pipe.incidents()
        assert incident["status"] == "open"

        # With the default list, its next delivery resolves that incident.
        pipe.client = client_for(db_url)
        pipe.post(am_alert(watchdog, starts_at=recent(60), annotations={"summary": "again"}))
        [incident] = pipe.incidents()
        assert incident["status"] == "resolved"
        assert pipe.alert_row(incident["alert_fingerprints"][0])["status"] == "firing"
    finally:
        pipe.close()
