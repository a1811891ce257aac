"""Drive the real service for incident tests: post webhooks, wait for the pipeline, read back."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.db import create_db_engine, utcnow
from tests.conftest import AUTH, ROOT
from tests.factories import am_alert, am_payload

WEBHOOK = "/api/v1/alerts/alertmanager"
EXAMPLE_GRAPH = ROOT / "examples" / "services.yaml"
SEVERITY_LABEL = {"P0": "critical", "P1": "high", "P2": "warning", "P3": "info"}


def recent(minutes_ago: float) -> datetime:
    """A whole-second time this many minutes before now (silences and windows act on now)."""
    return utcnow().replace(microsecond=0) - timedelta(minutes=minutes_ago)


def alert(
    service: str,
    name: str,
    at: datetime,
    severity: str = "P2",
    *,
    resolved_at: datetime | None = None,
    **labels: str,
) -> dict[str, Any]:
    """One Alertmanager alert on a service; resolved when `resolved_at` is given."""
    all_labels = {"alertname": name, "service": service, "severity": SEVERITY_LABEL[severity]}
    all_labels.update(labels)
    if resolved_at is None:
        return am_alert(all_labels, starts_at=at)
    return am_alert(all_labels, status="resolved", starts_at=at, ends_at=resolved_at)


class Pipeline:
    """Posts webhooks, waits for the pipeline to catch up, and reads incidents back."""

    def __init__(self, client: TestClient, db_url: str) -> None:
        self.client = client
        self.engine = create_db_engine(db_url)

    def close(self) -> None:
        self.engine.dispose()

    def load_graph(self, text: str | None = None) -> dict[str, Any]:
        body = EXAMPLE_GRAPH.read_text() if text is None else text
        response = self.client.put(
            "/api/v1/services/graph",
            content=body.encode(),
            headers={**AUTH, "Content-Type": "application/yaml"},
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def post(self, *alerts: dict[str, Any], wait: bool = True) -> list[str]:
        """One webhook request carrying these alerts; returns their fingerprints."""
        response = self.client.post(
            WEBHOOK, content=orjson.dumps(am_payload(list(alerts))), headers=AUTH
        )
        assert response.status_code == 200, response.text
        if wait:
            self.wait()
        return [str(a["fingerprint"]) for a in alerts]

    def wait(self, timeout: float = 10.0) -> None:
        """Until every pipeline job is done; fail at once on a job that raised."""
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.text("SELECT id, status, error FROM pipeline_jobs WHERE status != 'done'")
                ).all()
            errors = [f"job {r[0]} ({r[1]}): {r[2]}" for r in rows if r[2]]
            if errors:
                raise AssertionError("pipeline job failed: " + "; ".join(errors))
            if not rows:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"pipeline jobs still not done after {timeout}s: {rows}")
            time.sleep(0.05)

    def incidents(self, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get(
            "/api/v1/incidents", params={"limit": 500, **params}, headers=AUTH
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def incident(self, incident_id: int) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail

    def alert_row(self, fingerprint: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/alerts/{fingerprint}", headers=AUTH)
        assert response.status_code == 200, response.text
        row: dict[str, Any] = response.json()
        return row

    def live(self) -> list[dict[str, Any]]:
        """Incidents that were not merged into another one."""
        return [i for i in self.incidents() if i["status"] != "merged"]

    def all_timeline_kinds(self) -> list[str]:
        return [t["kind"] for i in self.incidents() for t in self.incident(i["id"])["timeline"]]


def kinds(detail: dict[str, Any]) -> list[str]:
    return [t["kind"] for t in detail["timeline"]]


def entries(detail: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [t for t in detail["timeline"] if t["kind"] == kind]
