"""Heartbeats through the API and the pipeline, with a clock the test moves: pings keep
them alive, a miss opens one routed incident, the next ping resolves it. SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from incidents.heartbeats.inject import fingerprint_of
from tests.api.test_metrics import scrape
from tests.conftest import AUTH
from tests.factories import am_alert, am_payload
from tests.heartbeats.conftest import BACKUP, WATCHDOG, Beats

WATCHDOG_LABELS = {
    "alertname": "Watchdog",
    "prometheus": "monitoring/kube-prometheus-stack-prometheus",
    "severity": "none",
}
WATCHDOG_TITLE = "Alertmanager Watchdog has not arrived for 5 minutes: alerting may be broken"


def _deliver(beats: Beats, *alerts: dict[str, Any]) -> str:
    response = beats.client.post(
        "/api/v1/alerts/alertmanager", content=orjson.dumps(am_payload(list(alerts))), headers=AUTH
    )
    assert response.status_code == 200, response.text
    beats.wait()
    status: str = response.json()["status"]
    return status


def test_a_new_heartbeat_waits_and_pings_keep_it_alive(beats: Beats) -> None:
    start = beats.clock.at
    body = beats.define(WATCHDOG)
    assert body["version"] == 1
    assert body["heartbeats"] == [
        {**WATCHDOG, "severity": "P1", "service": "monitoring", "title": None}
    ]
    [status] = body["status"]
    assert status["state"] == "waiting" and status["last_ping_at"] is None
    assert beats.status()["alertmanager"]["expires_at"] == (
        (start + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    )

    for _ in range(3):  # a ping every 4 minutes, each within interval + grace of the last
        beats.clock.advance(minutes=4)
        assert beats.upkeep() == []
        pinged = beats.ping("alertmanager")
        assert pinged["state"] == "alive" and pinged["seconds_since_ping"] == 0
    beats.clock.advance(minutes=4, seconds=59)
    assert beats.upkeep() == []
    alive = beats.status()["alertmanager"]
    assert alive["state"] == "alive" and alive["seconds_since_ping"] == 299
    assert beats.incidents() == [] and beats.heartbeat_deliveries() == 0


def test_a_miss_opens_one_p1_incident_and_the_next_ping_resolves_it(beats: Beats) -> None:
    beats.define(WATCHDOG, BACKUP)
    beats.ping("alertmanager")
    beats.clock.advance(minutes=5, seconds=20)
    assert len(beats.upkeep()) == 1
    assert beats.upkeep() == []  # already expired: nothing more
    status = beats.status()
    assert status["alertmanager"]["state"] == "expired"
    assert status["backup"]["state"] == "waiting"  # 70 minutes before it is missed

    [incident] = beats.incidents()
    assert incident["status"] == "open"
    assert incident["severity"] == "P1"
    assert incident["title"] == WATCHDOG_TITLE
    assert incident["services"] == ["monitoring"]
    assert incident["alert_fingerprints"] == [fingerprint_of("alertmanager")]
    alert = beats.missing_alert("alertmanager")
    assert alert["source"] == "heartbeat"
    assert alert["labels"] == {
        "alertname": "HeartbeatMissing",
        "heartbeat": "alertmanager",
        "severity": "P1",
        "service": "monitoring",
    }
    assert alert["annotations"]["summary"] == WATCHDOG_TITLE
    detail = beats.incident(incident["id"])
    opened = [t for t in detail["timeline"] if t["kind"] == "opened"]
    assert len(opened) == 1 and opened[0]["pages"]

    beats.clock.advance(minutes=1)
    beats.ping("alertmanager")
    assert beats.status()["alertmanager"]["state"] == "alive"
    assert beats.missing_alert("alertmanager")["status"] == "resolved"
    [resolved] = beats.incidents()
    assert resolved["status"] == "resolved"
    assert beats.heartbeat_deliveries() == 2  # the miss and its resolve

    # Missed again soon after: the same incident reopens, as for any alert firing again.
    beats.clock.advance(minutes=6)
    beats.upkeep()
    [again] = beats.incidents()
    assert (again["id"], again["status"]) == (incident["id"], "open")


def test_a_heartbeat_never_pinged_is_missed_from_its_definition(beats: Beats) -> None:
    beats.define({**BACKUP, "severity": "P2"})
    beats.clock.advance(minutes=69)
    assert beats.upkeep() == []
    beats.clock.advance(minutes=1, seconds=30)
    beats.upkeep()
    [incident] = beats.incidents()
    assert incident["title"] == "Heartbeat backup has not been pinged for 70 minutes"
    assert (incident["severity"], incident["services"]) == ("P2", ["backup"])
    assert beats.status()["backup"]["seconds_since_ping"] == 70 * 60 + 30


def test_the_watchdog_delivered_through_the_webhook_pings(beats: Beats) -> None:
    beats.define(WATCHDOG)
    watchdog = am_alert(WATCHDOG_LABELS, starts_at=beats.clock.at - timedelta(hours=3))
    assert _deliver(beats, watchdog) == "accepted"
    assert beats.status()["alertmanager"]["state"] == "alive"
    # The Watchdog itself still opens nothing (ingest.ignore_alerts).
    assert beats.incidents() == []

    # Other alerts, and a resolved Watchdog, are no pings.
    beats.clock.advance(minutes=3)
    _deliver(beats, am_alert({"alertname": "DiskFull", "service": "db"}))
    _deliver(beats, am_alert(WATCHDOG_LABELS, status="resolved"))
    assert beats.status()["alertmanager"]["seconds_since_ping"] == 180

    beats.clock.advance(minutes=3)
    beats.upkeep()
    [incident] = [
        i for i in beats.incidents() if fingerprint_of("alertmanager") in i["alert_fingerprints"]
    ]
    assert incident["title"] == "Alertmanager Watchdog has not arrived for 6 minutes: " + (
        "alerting may be broken"
    )
    # Alertmanager re-sends the group unchanged: a duplicate delivery, and still a ping.
    assert _deliver(beats, watchdog) == "duplicate"
    assert beats.status()["alertmanager"]["state"] == "alive"
    assert beats.incident(incident["id"])["status"] == "resolved"


def test_unknown_names_and_bad_documents(beats: Beats) -> None:
    client = beats.client
    missing = client.post("/api/v1/heartbeats/nobody/ping", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["field"] == "name" and "'nobody'" in missing.json()["message"]
    assert client.post("/api/v1/heartbeats/backup/ping").status_code == 401
    assert client.get("/api/v1/heartbeats").status_code == 401

    def put(body: Any) -> dict[str, Any]:
        response = client.put("/api/v1/heartbeats", json=body, headers=AUTH)
        assert response.status_code == 422, response.text
        answer: dict[str, Any] = response.json()
        return answer

    bad = put({"heartbeats": [{**WATCHDOG, "interval": "soon"}]})
    assert bad["field"] == "heartbeats[0].interval"
    assert bad["message"].startswith("heartbeats[0].interval: Value error, not a valid duration")
    twice = put({"heartbeats": [BACKUP, WATCHDOG, {**BACKUP, "grace": "1m"}]})
    assert twice["field"] == "heartbeats[2].name" and "defined twice" in twice["message"]
    matchers = put({"heartbeats": [{**WATCHDOG, "alert": {"matchers": ['alertname=="X"']}}]})
    assert matchers["field"] == "heartbeats[0].alert.matchers[0]"
    assert put({"heartbeats": [{**BACKUP, "extra": 1}]})["field"] == "heartbeats[0].extra"
    assert put({})["field"] == "heartbeats"
    assert put([])["field"] == "request"
    assert beats.status() == {}
    assert client.put(
        "/api/v1/heartbeats", content=b"{", headers={**AUTH, "Content-Type": "application/json"}
    ).status_code in (400, 422)


def test_replacing_keeps_clocks_and_resolves_removed_misses(beats: Beats) -> None:
    start = beats.clock.at
    beats.define(WATCHDOG, BACKUP)
    beats.clock.advance(minutes=2)
    beats.ping("backup")
    before = beats.status()
    # The same document again (or after a restart) changes no clock.
    assert beats.define(WATCHDOG, BACKUP)["version"] == 2
    assert beats.status() == before
    # A longer interval moves the deadline from the last ping; a waiting one restarts.
    beats.define({**WATCHDOG, "interval": "10m"}, {**BACKUP, "interval": "2h"})
    after = beats.status()
    assert after["backup"]["expires_at"] == _z(start + timedelta(minutes=2, hours=2, seconds=600))
    assert after["alertmanager"]["expires_at"] == _z(start + timedelta(minutes=16))

    beats.clock.advance(minutes=15)
    beats.upkeep()
    [incident] = beats.incidents()
    assert incident["status"] == "open"
    beats.define(BACKUP)  # the missed heartbeat is removed: its alert and incident resolve
    assert beats.missing_alert("alertmanager")["status"] == "resolved"
    assert beats.incident(incident["id"])["status"] == "resolved"
    assert set(beats.status()) == {"backup"}


def _z(moment: Any) -> str:
    text: str = moment.isoformat().replace("+00:00", "Z")
    return text


def test_metrics_show_each_heartbeat(beats: Beats) -> None:
    beats.define(WATCHDOG, BACKUP)
    beats.clock.advance(seconds=30)
    beats.ping("alertmanager")
    beats.clock.advance(minutes=6)
    beats.upkeep()
    samples = scrape(beats.client)

    def sample(metric: str, name: str) -> float | None:
        return samples.get((f"incidents_heartbeat_{metric}", (("heartbeat", name),)))

    assert sample("seconds_since_ping", "alertmanager") == 360.0
    assert sample("seconds_since_ping", "backup") == 390.0
    assert sample("expired", "alertmanager") == 1.0
    assert sample("expired", "backup") == 0.0
    beats.define(BACKUP)
    samples = scrape(beats.client)
    assert sample("expired", "alertmanager") is None
    assert sample("expired", "backup") == 0.0
