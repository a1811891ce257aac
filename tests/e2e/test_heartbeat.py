"""The dead man's switch against the real Alertmanager: the one incident that an outage of
the whole monitoring pipeline still produces.

Our service runs with a heartbeat from its config file that the Watchdog pings (an
interval of seconds, so the test is short). The real Alertmanager re-sends the firing
Watchdog every second; those deliveries keep the heartbeat alive and open nothing. Then
Alertmanager stops: the heartbeat is missed and a P1 incident opens, through the same
pipeline as any alert. Alertmanager starts again, Prometheus (played by the test) sends
it the Watchdog again, and the next delivery resolves the incident.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidents.db import utcnow
from incidents.heartbeats.inject import fingerprint_of
from tests.e2e.conftest import running_service
from tests.e2e.processes import (
    HOOK_PATH,
    START_TIMEOUT,
    TOKEN,
    Proc,
    Service,
    free_port,
    parse_time,
    rfc3339,
    spawn,
    wait_for,
)

pytestmark = pytest.mark.alertmanager

# Missed 8 s after the last ping; the upkeep looks twice a second.
CONFIG = """\
pipeline:
  upkeep_interval_seconds: 0.5
correlation:
  open_hold_seconds: 0
  quiet_period_seconds: 2     # monitoring this long once the Watchdog is back
heartbeats:
  - name: alertmanager
    interval: 3s
    grace: 5s
    alert:
      matchers: ['alertname="Watchdog"']
"""

# The Watchdog routed to us and re-sent every second, as alertmanager.yml in the README
# does every minute.
AM_CONFIG = """\
route:
  receiver: incidents
  group_by: ['alertname']
  routes:
    - matchers: ['alertname="Watchdog"']
      receiver: incidents
      group_wait: 0s
      group_interval: 1s
      repeat_interval: 1s
receivers:
  - name: incidents
    webhook_configs:
      - url: {hook}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""

TITLE = re.compile(
    r"Alertmanager Watchdog has not arrived for (\d+) seconds: alerting may be broken"
)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Our service with the Watchdog heartbeat from its config file."""
    tmp = tmp_path_factory.mktemp("heartbeat")
    config = tmp / "config.yaml"
    config.write_text(CONFIG)
    with running_service(tmp, INCIDENTS_CONFIG=str(config)) as svc:
        yield svc


@dataclass
class Manager:
    """Starts and stops the real Alertmanager on one port and storage."""

    binary: str
    folder: Path
    port: int
    proc: Proc | None = None
    runs: int = 0

    def start(self) -> None:
        self.runs += 1
        self.proc = spawn(
            "alertmanager",
            [
                self.binary,
                f"--config.file={self.folder / 'am.yml'}",
                f"--storage.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            self.folder / f"alertmanager-{self.runs}.log",
        )
        with self._client() as client:
            wait_for(
                "Alertmanager's /-/ready",
                lambda: True if client.get("/-/ready").status_code == 200 else None,
                START_TIMEOUT,
                self.logs,
                (self.proc,),
            )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def fire_watchdog(self) -> None:
        """What Prometheus does with kube-prometheus' Watchdog rule: fire it, always."""
        watchdog = {
            "labels": {"alertname": "Watchdog", "severity": "none"},
            "annotations": {"summary": "An alert that should always be firing"},
            "startsAt": rfc3339(utcnow() - timedelta(minutes=1)),
            "endsAt": rfc3339(utcnow() + timedelta(hours=1)),
        }
        with self._client() as client:
            response = client.post("/api/v2/alerts", json=[watchdog])
        assert response.status_code == 200, response.text

    def logs(self) -> str:
        return self.proc.logs() if self.proc is not None else "(Alertmanager not started)"

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5, trust_env=False)


@pytest.fixture
def manager(
    am_binary: str, watched: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Manager]:
    folder = tmp_path_factory.mktemp("am")
    (folder / "data").mkdir()
    (folder / "am.yml").write_text(
        AM_CONFIG.format(hook=f"{watched.base_url}{HOOK_PATH}", token=TOKEN)
    )
    manager = Manager(am_binary, folder, free_port())
    try:
        yield manager
    finally:
        manager.stop()


def _heartbeat(service: Service) -> dict[str, Any]:
    response = service.client.get("/api/v1/heartbeats")
    assert response.status_code == 200, response.text
    [status] = response.json()["status"]
    assert status["name"] == "alertmanager"
    found: dict[str, Any] = status
    return found


def _incidents(service: Service) -> list[dict[str, Any]]:
    response = service.client.get("/api/v1/incidents")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_stopping_alertmanager_opens_the_heartbeat_incident_and_restarting_resolves_it(
    watched: Service, manager: Manager
) -> None:
    def diagnostics() -> str:
        return "\n".join(
            [
                f"heartbeat: {_heartbeat(watched)}",
                f"incidents: {_incidents(watched)}",
                manager.logs(),
                watched.proc.logs(),
            ]
        )

    manager.start()
    manager.fire_watchdog()

    # Each re-send of the Watchdog is a ping: its time moves on, and nothing opens.
    pings: set[str] = set()

    def three_pings() -> bool | None:
        status = _heartbeat(watched)
        if status["state"] == "alive":
            pings.add(status["last_ping_at"])
        return True if len(pings) >= 3 else None

    wait_for("three Watchdog deliveries pinging the heartbeat", three_pings, 20, diagnostics)
    assert _incidents(watched) == []
    watchdog = watched.client.get("/api/v1/alerts", params={"filter": 'alertname="Watchdog"'})
    [stored] = watchdog.json()["items"]
    assert stored["ignored_by"] == 'alertname="Watchdog"'  # stored, opens nothing itself

    # The monitoring pipeline goes down: the heartbeat incident is what still pages.
    manager.stop()
    stopped = utcnow()

    def opened() -> dict[str, Any] | None:
        found = [i for i in _incidents(watched) if i["status"] == "open"]
        return found[0] if found else None

    incident = wait_for("the heartbeat incident", opened, 20, diagnostics)
    waited = (utcnow() - stopped).total_seconds()
    # Interval + grace after the last ping (a re-send every second or two before the stop),
    # plus at most one upkeep interval and the pipeline run.
    assert 5 <= waited <= 20, waited
    assert incident["severity"] == "P1"
    assert incident["services"] == ["monitoring"]
    assert incident["alert_fingerprints"] == [fingerprint_of("alertmanager")]
    title = TITLE.fullmatch(incident["title"])
    assert title is not None, incident["title"]
    assert 8 <= int(title.group(1)) <= 15
    status = _heartbeat(watched)
    assert status["state"] == "expired"
    last_ping = parse_time(status["last_ping_at"])
    assert parse_time(status["expires_at"]) == last_ping + timedelta(seconds=8)
    detail = watched.client.get(f"/api/v1/incidents/{incident['id']}").json()
    assert [t["kind"] for t in detail["timeline"] if t["pages"]] == ["opened"]
    metrics = watched.client.get("/metrics").text
    assert 'incidents_heartbeat_expired{heartbeat="alertmanager"} 1.0' in metrics

    # Alertmanager is back and Prometheus sends it the Watchdog again: resolved.
    manager.start()
    manager.fire_watchdog()

    def in_state(state: str) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            found = [i for i in _incidents(watched) if i["id"] == incident["id"]]
            return found[0] if found and found[0]["state"] == state else None

        return check

    # Its alert resolved: monitoring for the quiet period, then resolved.
    wait_for("the heartbeat incident to be monitored", in_state("monitoring"), 20, diagnostics)
    wait_for("the heartbeat incident to resolve", in_state("resolved"), 20, diagnostics)
    assert _heartbeat(watched)["state"] == "alive"
    assert len(_incidents(watched)) == 1
    detail = watched.client.get(f"/api/v1/incidents/{incident['id']}").json()
    assert [t["kind"] for t in detail["timeline"] if t["pages"]] == ["opened", "resolved"]
