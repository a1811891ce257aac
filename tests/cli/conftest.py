"""A real `incidents serve` for the client commands, and helpers to drive them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from incidents.cli import main
from tests.api.live import LiveServer, live_server
from tests.conftest import TOKEN

T = TypeVar("T")

# alice is on call on `primary` around the clock; `nights` has a gap in the daytime.
CONFIG = """
users:
  - {name: alice, email: alice@example.com, time_zone: UTC}
  - {name: bob, email: bob@example.com, time_zone: UTC}
schedules:
  - name: primary
    time_zone: UTC
    layers:
      - {users: [alice], rotation: 1w, handoff: "2026-01-05T09:00:00"}
"""


@dataclass
class Service:
    """The running service, an API client for checking what the CLI did, and its URL."""

    server: LiveServer
    url: str
    api: httpx.Client

    def post_alert(
        self, alertname: str, service: str, severity: str = "critical", status: str = "firing"
    ) -> str:
        """Post one alert as Alertmanager would; returns its fingerprint."""
        fingerprint = uuid.uuid4().hex[:16]
        labels = {"alertname": alertname, "service": service, "severity": severity}
        alert = {
            "status": status,
            "labels": labels,
            "annotations": {"summary": f"{alertname} on {service}"},
            "startsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.test/graph",
            "fingerprint": fingerprint,
        }
        body = {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{alertname}"}}',
            "status": status,
            "receiver": "incidents",
            "groupLabels": {"alertname": alertname},
            "commonLabels": labels,
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.test",
            "alerts": [alert],
        }
        response = self.api.post("/api/v1/alerts/alertmanager", json=body)
        assert response.status_code in (200, 202), response.text
        return fingerprint

    def incident_of(self, fingerprint: str) -> dict[str, Any]:
        """The open incident that holds the alert, once the pipeline has run."""

        def probe() -> dict[str, Any] | None:
            page = self.api.get("/api/v1/incidents", params={"limit": 500}).json()
            for item in page["items"]:
                if fingerprint in item["alert_fingerprints"]:
                    return dict(item)
            return None

        return eventually(probe, f"an incident holding alert {fingerprint}")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    """Poll until `probe` returns something; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One live service for the CLI tests (SQLite, the test token, a schedule)."""
    tmp = tmp_path_factory.mktemp("cli-service")
    config = tmp / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    with live_server(tmp, config=str(config), broker_url="") as server:
        url = f"http://127.0.0.1:{server.port}"
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ) as api:
            yield Service(server, url, api)


@pytest.fixture(autouse=True)
def no_client_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's INCIDENTS_URL/KEY or client config file must not reach the tests."""
    monkeypatch.delenv("INCIDENTS_URL", raising=False)
    monkeypatch.delenv("INCIDENTS_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@dataclass
class Outcome:
    """What one run of the command printed, and its exit status."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(service: Service, capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """Run `incidents ARGS --url ... --key ...` in this process (key=None: send none)."""

    def run(*args: str, key: str | None = TOKEN, url: str | None = None) -> Outcome:
        capsys.readouterr()
        flags = ["--url", url or service.url] + (["--key", key] if key is not None else [])
        code = main([*args, *flags])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run
