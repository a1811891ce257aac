"""Stale alerts: a firing alert that its sender stopped re-sending is shown as stale on its
incident (Alertmanager re-sends firing alerts every repeat_interval, and sometimes loses a
resolve)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.db import utcnow
from tests.api.incident_pipe import Pipeline, alert, recent


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

    from incidents.models import ALERTS

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
