"""A service with a P0 route, an escalation policy, users with Slack ids, and the local
Slack stand-in; the notify worker is driven by the tests (`room.send()`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.setup import make_notify_worker
from incidents.notify.worker import NotifyWorker
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH, make_settings
from tests.warroom.fake_slack_rooms import FakeSlackRooms

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
USERS = {
    "users": [
        {"name": "alice", "phone": "+15551230001", "slack_user_id": "U0ALICE"},
        {"name": "bob", "phone": "+15551230002", "slack_user_id": "U0BOB"},
        {"name": "dana", "phone": "+15551230004", "slack_user_id": "U0DANA"},
    ]
}
SCHEDULES = {
    "schedules": [
        {
            "name": "primary",
            "time_zone": "UTC",
            "layers": [{"users": ["alice"], "rotation": "1w", "handoff": "2026-01-05T09:00:00Z"}],
        },
        {
            "name": "database",
            "time_zone": "UTC",
            "team": "data-platform",
            "layers": [{"users": ["dana"], "rotation": "1w", "handoff": "2026-01-05T09:00:00Z"}],
        },
    ]
}
LADDER = {
    "name": "p0",
    "levels": [
        {"wait": "5m", "targets": [{"schedule": "primary"}]},
        {"targets": [{"user": "bob"}]},
    ],
    "fallback": [{"user": "bob"}],
}
ROUTING = {
    "receivers": [
        {"name": "default", "console": ["stdout"]},
        {"name": "critical", "slack": ["#incidents-critical"], "escalation_policy": "p0"},
    ],
    "route": {
        "receiver": "default",
        "routes": [{"matchers": ['severity=~"P0|P1"'], "receiver": "critical"}],
    },
}


@dataclass
class Room:
    """The service, its Slack, and a notify worker to send with."""

    pipe: Pipeline
    slack: FakeSlackRooms
    worker: NotifyWorker
    sessions: sessionmaker[Session]

    @property
    def client(self) -> TestClient:
        return self.pipe.client

    def page(self, severity: str = "P0", service: str = "database-postgres") -> int:
        self.pipe.post(alert(service, f"{service}-down", recent(1), severity))
        [incident] = [i for i in self.pipe.live() if service in i["services"]]
        return int(incident["id"])

    def send(self) -> None:
        """The incident's Slack message first, then the war room."""
        self.worker.run_once("slack")
        self.worker.run_once("warroom")

    def rows(self, incident_id: int) -> list[dict[str, Any]]:
        with self.sessions() as session:
            n = NOTIFICATIONS.c
            found = session.execute(
                sa.select(n.id, n.event_key, n.event, n.status, n.not_before, n.error)
                .where(n.incident_id == incident_id, n.channel == "warroom")
                .order_by(n.id)
            ).mappings()
            return [dict(r) for r in found]

    def make_due(self, incident_id: int) -> None:
        """Bring every waiting war-room row's time forward to now."""
        with self.sessions() as session:
            session.execute(
                sa.text(
                    "UPDATE notifications SET not_before = :t WHERE incident_id = :i "
                    "AND channel = 'warroom' AND status = 'pending'"
                ),
                {"i": incident_id, "t": recent(1)},
            )
            session.commit()

    def incident(self, incident_id: int) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


def _put(pipe: Pipeline, path: str, body: dict[str, Any]) -> None:
    response = pipe.client.put(path, json=body, headers=AUTH)
    assert response.status_code == 200, response.text


@pytest.fixture
def slack() -> Iterator[FakeSlackRooms]:
    with FakeSlackRooms() as fake:
        yield fake


@pytest.fixture
def room_for(
    db_url: str, client_for: Callable[..., TestClient], slack: FakeSlackRooms
) -> Iterator[Callable[..., Room]]:
    made: list[Room] = []
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)

    def start(**overrides: Any) -> Room:
        values: dict[str, Any] = {
            "routing": ROUTING,
            "correlation": {"open_hold_seconds": 0},
            "notify": {"enabled": False},
            "pipeline": {"escalation_sweep_seconds": 60},
            "slack_bot_token": slack.token,
            "slack_api_url": slack.api_url,
            "slack_signing_secret": SIGNING_SECRET,
            **overrides,
            "warroom": {"enabled": True, **overrides.get("warroom", {})},
        }
        client = client_for(db_url, **values)
        pipe = Pipeline(client, db_url)
        pipe.load_graph()
        _put(pipe, "/api/v1/users", USERS)
        _put(pipe, "/api/v1/schedules", SCHEDULES)
        _put(pipe, "/api/v1/escalation-policies", {"policies": [LADDER]})
        worker = make_notify_worker(sessions, make_settings(db_url, **values))
        room = Room(pipe, slack, worker, sessions)
        made.append(room)
        return room

    yield start
    for room in made:
        room.pipe.close()
    engine.dispose()


@pytest.fixture
def room(room_for: Callable[..., Room]) -> Room:
    return room_for()
