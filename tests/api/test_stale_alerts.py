"""Stale alerts: a firing alert that its sender stopped re-sending is shown as stale on its
incident (Alertmanager re-sends firing alerts every repeat_interval, and sometimes loses a
resolve), and the incident's timeline says so once per staleness."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.db import make_session_factory, utcnow
from incidents.models import ALERTS
from incidents.pipeline.maintenance import maintain
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import make_settings


def test_an_alert_not_sent_again_for_long_is_stale(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(db_url, correlation={"stale_after_seconds": 3600})
    pipe = Pipeline(client, db_url)
    pipe.load_graph()
    pipe.post(alert("user-service", "LoginErrors", recent(10), "P1"))
    pipe.post(alert("user-service", "SlowLogins", recent(9), "P2"))
    [incident] = pipe.live()
    fresh = {a["labels"]["alertname"]: a for a in pipe.incident(incident["id"])["alerts"]}
    assert not fresh["LoginErrors"]["stale"] and fresh["LoginErrors"]["last_received"]

    with pipe.engine.begin() as conn:
        conn.execute(
            sa.update(ALERTS)
            .where(ALERTS.c.fingerprint == fresh["LoginErrors"]["fingerprint"])
            .values(last_received=utcnow() - timedelta(hours=2))
        )
    shown = {a["labels"]["alertname"]: a for a in pipe.incident(incident["id"])["alerts"]}
    assert shown["LoginErrors"]["stale"] is True
    assert shown["SlowLogins"]["stale"] is False
    pipe.close()


def test_an_alert_going_stale_is_said_once_on_the_timeline(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(db_url, correlation={"stale_after_seconds": 3600})
    pipe = Pipeline(client, db_url)
    pipe.load_graph()
    [fingerprint, _] = pipe.post(
        alert("user-service", "LoginErrors", recent(10), "P1"),
        alert("user-service", "SlowLogins", recent(9), "P2"),
    )
    [incident] = pipe.live()
    settings = make_settings(db_url, correlation={"stale_after_seconds": 3600})
    sessions = make_session_factory(pipe.engine)

    def received(hours_ago: float) -> None:
        with pipe.engine.begin() as conn:
            conn.execute(
                sa.update(ALERTS)
                .where(ALERTS.c.fingerprint == fingerprint)
                .values(last_received=utcnow() - timedelta(hours=hours_ago))
            )

    def stale_entries() -> list[dict[str, Any]]:
        entries = pipe.incident(incident["id"])["timeline"]
        return [e for e in entries if e["kind"] == "alert_stale"]

    maintain(sessions, settings)
    assert stale_entries() == []  # both fresh
    received(2)
    for _ in range(3):  # every upkeep sees it stale; the timeline says it once
        maintain(sessions, settings)
    [entry] = stale_entries()
    assert entry["data"]["alertname"] == "LoginErrors"
    assert entry["data"]["fingerprint"] == fingerprint
    assert "LoginErrors" in entry["message"] and "stale" in entry["message"]
    assert "2.0 h" in entry["message"]
    received(0)  # sent again: fresh, nothing new to say
    maintain(sessions, settings)
    assert len(stale_entries()) == 1
    received(3)  # and stale again: a new staleness, a new entry
    maintain(sessions, settings)
    maintain(sessions, settings)
    assert [e["data"]["alertname"] for e in stale_entries()] == ["LoginErrors", "LoginErrors"]
    pipe.close()
