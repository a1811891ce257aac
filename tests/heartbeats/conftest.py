"""Fixtures of the heartbeat tests: a clock the test moves, and the service around it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.api.deps import ServiceState
from incidents.db import utcnow
from incidents.heartbeats import clock
from incidents.heartbeats.inject import fingerprint_of
from incidents.pipeline.maintenance import maintain
from tests.api.incident_pipe import Pipeline
from tests.conftest import AUTH

WATCHDOG: dict[str, Any] = {
    "name": "alertmanager",
    "interval": "1m",
    "grace": "4m",
    "alert": {"matchers": ['alertname="Watchdog"']},
}
BACKUP: dict[str, Any] = {"name": "backup", "interval": "1h", "grace": "10m", "service": "backup"}


class FakeClock:
    """The heartbeats' time, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **span: float) -> datetime:
        self.at += timedelta(**span)
        return self.at


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    # Starts at the real time: the incidents it opens are recent, as in production.
    fake = FakeClock(utcnow().replace(microsecond=0))
    monkeypatch.setattr(clock, "now", fake)
    return fake


class Beats(Pipeline):
    """The service with heartbeats: define, ping, run the upkeep, read back."""

    def __init__(self, client: TestClient, db_url: str, fake: FakeClock) -> None:
        super().__init__(client, db_url)
        self.clock = fake

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.client.app.state.service  # type: ignore[attr-defined]
        return state

    def define(self, *heartbeats: dict[str, Any]) -> dict[str, Any]:
        response = self.client.put(
            "/api/v1/heartbeats", json={"heartbeats": list(heartbeats)}, headers=AUTH
        )
        assert response.status_code == 200, response.text
        self.wait()
        body: dict[str, Any] = response.json()
        return body

    def status(self) -> dict[str, dict[str, Any]]:
        response = self.client.get("/api/v1/heartbeats", headers=AUTH)
        assert response.status_code == 200, response.text
        return {s["name"]: s for s in response.json()["status"]}

    def ping(self, name: str) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/heartbeats/{name}/ping", headers=AUTH)
        assert response.status_code == 200, response.text
        self.wait()
        body: dict[str, Any] = response.json()
        return body

    def upkeep(self) -> list[int]:
        """One upkeep, as the worker runs it; its jobs run before this returns."""
        jobs = maintain(self.state.sessions, self.state.settings)
        for job_id in jobs:
            self.state.dispatcher.dispatch(job_id)
        self.wait()
        return jobs

    def missing_alert(self, name: str) -> dict[str, Any]:
        return self.alert_row(fingerprint_of(name))

    def heartbeat_deliveries(self) -> int:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT count(*) FROM webhook_deliveries WHERE source = 'heartbeat'")
            ).scalar_one()
        return int(found)


@pytest.fixture
def beats(
    db_url: str, client_for: Callable[..., TestClient], fake_clock: FakeClock
) -> Iterator[Beats]:
    # The test runs the upkeep itself, at the times it sets.
    client = client_for(db_url, pipeline={"upkeep_interval_seconds": 3600})
    service = Beats(client, db_url, fake_clock)
    yield service
    service.close()
