"""A real cascade, built once per test module: a database outage and its dependents on
the example graph, posted as Alertmanager webhooks and worked through the API; plus a
throttled AI model (a possibly related incident) and a cache blip nobody acted on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.api.app import create_app
from incidents.db import utcnow
from incidents.models import TIMELINE
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH, make_settings

# An alert's labels come from whoever wrote the alerting rule: markup must stay text.
HOSTILE = "<script>alert('pm')</script>"

# Every page goes to the console; the P1 database page also starts an escalation ladder
# that emails alice (email is not configured, so it too goes to the console).
ROUTING = {
    "receivers": [
        {"name": "default", "console": ["stdout"]},
        {"name": "database", "console": ["stdout"], "escalation_policy": "db"},
    ],
    "route": {
        "receiver": "default",
        "routes": [{"matchers": ['service="database-postgres"'], "receiver": "database"}],
    },
}
USERS = [{"name": "alice", "email": "alice@example.com"}]
ESCALATION = {
    "policies": [{"name": "db", "levels": [{"wait": "5m", "targets": [{"user": "alice"}]}]}]
}


@dataclass
class Cascade:
    """The service, and the incidents the scenario made."""

    client: TestClient
    pipe: Pipeline
    incident_id: int
    related_id: int
    quiet_id: int

    def incident(self, incident_id: int | None = None) -> dict[str, Any]:
        """The incident as the list shows it (the detail view validates timeline kinds
        against the enum, which the playbook kinds are not in yet)."""
        wanted = incident_id or self.incident_id
        return next(i for i in self.pipe.incidents() if i["id"] == wanted)

    def get(self, path: str, **params: Any) -> Any:
        """GET with the token."""
        return self.client.get(path, params=params, headers=AUTH)


def _act(client: TestClient, incident_id: int, action: str, body: dict[str, Any]) -> None:
    response = client.post(f"/api/v1/incidents/{incident_id}/{action}", json=body, headers=AUTH)
    assert response.status_code == 200, response.text


@contextmanager
def cascade_on(db_url: str) -> Iterator[Cascade]:
    """Run the scenario on a migrated, empty database."""
    settings = make_settings(
        db_url,
        correlation={"open_hold_seconds": 0},
        routing=ROUTING,
        users=USERS,
        escalation=ESCALATION,
        pipeline={"escalation_sweep_seconds": 0.1},
    )
    app = create_app(settings)
    with TestClient(app) as client:
        pipe = Pipeline(client, db_url)
        try:
            yield _scenario(client, pipe)
        finally:
            pipe.close()


def _scenario(client: TestClient, pipe: Pipeline) -> Cascade:
    pipe.load_graph()
    t0 = recent(10)
    pipe.post(alert("database-postgres", "PostgresDown", t0, "P1", instance="db-1"))
    pipe.post(alert("ai-models-bedrock", "BedrockThrottling", t0 + timedelta(seconds=5)))
    pipe.post(alert("ai-analysis-service", "AnalysisErrors", t0 + timedelta(seconds=10)))
    pipe.post(
        alert("user-service", "LoginErrors", t0 + timedelta(seconds=20)),
        alert("api-gateway", "Gateway5xx", t0 + timedelta(seconds=30), "P1"),
        alert("feedback-service", "FeedbackErrors", t0 + timedelta(seconds=40), note=HOSTILE),
    )
    live = pipe.live()
    incident = next(i for i in live if "database-postgres" in i["services"])
    related = next(i for i in live if i["services"] == ["ai-models-bedrock"])
    iid = int(incident["id"])
    _wait_for(pipe, iid, "escalated")
    _act(client, iid, "acknowledge", {"by": "alice", "message": "looking at the primary"})
    _act(client, iid, "notes", {"by": "alice", "message": f"failover started {HOSTILE}"})
    _playbook(pipe, iid)
    _act(client, iid, "resolve", {"by": "alice", "message": "replica promoted"})
    # A cache blip: it fires, pages, and resolves by itself while nobody acts.
    c0 = recent(3)
    pipe.post(alert("cache-redis", "RedisDown", c0, "P2"))
    pipe.post(alert("cache-redis", "RedisDown", c0, "P2", resolved_at=c0 + timedelta(seconds=50)))
    quiet = next(i for i in pipe.incidents() if i["services"] == ["cache-redis"])
    return Cascade(client, pipe, iid, int(related["id"]), int(quiet["id"]))


def _wait_for(pipe: Pipeline, incident_id: int, kind: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    query = sa.select(sa.func.count()).where(
        TIMELINE.c.incident_id == incident_id, TIMELINE.c.kind == kind
    )
    while True:
        with pipe.engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        assert time.monotonic() < deadline, f"no {kind} entry on incident {incident_id}"
        time.sleep(0.05)


def _playbook(pipe: Pipeline, incident_id: int) -> None:
    """Playbook runs as the playbook runner records them (a component built elsewhere)."""
    now = utcnow()
    base = {"incident_id": incident_id, "actor": "system", "pages": False}
    run = {"run_id": "r-1", "playbook": "failover-postgres"}
    rows = [
        {
            **base,
            "at": now,
            "kind": "playbook_run",
            "message": "playbook failover-postgres started",
            "data": {**run, "status": "running"},
        },
        {
            **base,
            "at": now + timedelta(milliseconds=1),
            "kind": "playbook_step",
            "message": "step promote: succeeded",
            "data": {
                **run,
                "step": "promote",
                "action": "http",
                "status": "succeeded",
                "result": "HTTP 200",
                "error": None,
            },
        },
        {
            **base,
            "at": now + timedelta(milliseconds=2),
            "kind": "playbook_run",
            "message": "playbook failover-postgres succeeded",
            "data": {**run, "status": "succeeded"},
        },
    ]
    with pipe.engine.begin() as conn:
        conn.execute(sa.insert(TIMELINE), rows)
