"""The people, schedules, policy and routes the escalation tests page through, and
helpers to page and to read what a step did."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import utcnow
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH

USERS = {
    "users": [
        {"name": "alice", "phone": "+15551230001", "slack_user_id": "U0ALICE"},
        {
            "name": "bob",
            "phone": "+15551230002",
            "email": "bob@example.com",
            "notification_rules": [
                {"channel": "sms", "after": "0m"},
                {"channel": "voice", "after": "2m"},
            ],
        },
        {"name": "carol", "email": "carol@example.com"},
        {"name": "dana", "phone": "+15551230004"},
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
        {
            # Covered only 00:00-00:01 on Sundays: a gap nearly always.
            "name": "sparse",
            "time_zone": "UTC",
            "layers": [
                {
                    "users": ["dana"],
                    "rotation": "1w",
                    "handoff": "2026-01-05T09:00:00Z",
                    "restrictions": [{"days": ["sun"], "from": "00:00", "to": "00:01"}],
                }
            ],
        },
    ]
}
LADDER = {
    "name": "p0",
    "levels": [
        {"wait": "5m", "targets": [{"schedule": "primary"}]},
        {"wait": "10m", "targets": [{"user": "bob"}]},
        {"targets": [{"slack_channel": "#escalations"}]},
    ],
    "fallback": [{"user": "carol"}],
}
ROUTING = {
    "receivers": [
        {"name": "default", "console": ["stdout"]},
        {"name": "critical", "slack": ["#incidents-critical"], "escalation_policy": "p0"},
    ],
    "route": {
        "receiver": "default",
        "routes": [{"matchers": ['severity="P0"'], "receiver": "critical"}],
    },
}


def start(
    db_url: str,
    client_for: Callable[..., TestClient],
    routing: dict[str, Any] = ROUTING,
    *,
    quiet_seconds: float | None = None,
) -> Pipeline:
    """The service with USERS, SCHEDULES and the LADDER policy; the tests sweep by hand.
    `quiet_seconds` sets the quiet period (the default's otherwise)."""
    correlation: dict[str, float] = {"open_hold_seconds": 0}
    if quiet_seconds is not None:
        correlation["quiet_period_seconds"] = quiet_seconds
    client = client_for(
        db_url,
        routing=routing,
        correlation=correlation,
        notify={"enabled": False},
        pipeline={"escalation_sweep_seconds": 60},  # the tests run the sweep themselves
    )
    pipeline = Pipeline(client, db_url)
    pipeline.load_graph()
    put(pipeline, "/api/v1/users", USERS)
    put(pipeline, "/api/v1/schedules", SCHEDULES)
    put(pipeline, "/api/v1/escalation-policies", {"policies": [LADDER]})
    return pipeline


def put(pipe: Pipeline, path: str, body: dict[str, Any]) -> Any:
    response = pipe.client.put(path, json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def page(pipe: Pipeline, service: str = "database-postgres", severity: str = "P0") -> int:
    pipe.post(alert(service, f"{service}-down", recent(1), severity))
    [incident] = [i for i in pipe.live() if service in i["services"]]
    return int(incident["id"])


def escalated(pipe: Pipeline, incident_id: int) -> list[dict[str, Any]]:
    entries = pipe.incident(incident_id)["timeline"]
    return [e for e in entries if e["kind"] == "escalated"]


def rows(sessions: sessionmaker[Session], incident_id: int) -> list[tuple[str, str, str, str]]:
    with sessions() as session:
        found = session.execute(
            sa.text(
                "SELECT event_key, channel, target, status FROM notifications "
                "WHERE incident_id = :i AND event_key LIKE 'escalation:%' ORDER BY id"
            ),
            {"i": incident_id},
        ).all()
    return [(str(k), str(c), str(t), str(s)) for k, c, t, s in found]


def later(minutes: float) -> datetime:
    return utcnow() + timedelta(minutes=minutes)
