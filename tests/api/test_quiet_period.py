"""The quiet period: an incident whose alerts all resolved is `monitoring`, resolves by
itself once the period passes with nothing firing again, and an alert that fires again
meanwhile takes the same incident back. Time is moved by running the upkeep as of a
later moment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.pipeline.maintenance import maintain
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH, make_settings
from tests.notify.test_routing_stage import ROUTING, notifications

QUIET = 600.0


@pytest.fixture
def pipe(db_url: str, client_for: Callable[..., TestClient]) -> Pipeline:
    client = client_for(
        db_url,
        routing=ROUTING,
        correlation={"open_hold_seconds": 0, "quiet_period_seconds": QUIET},
        notify={"enabled": False},
    )
    pipeline = Pipeline(client, db_url)
    pipeline.load_graph()
    return pipeline


def upkeep_after(db_url: str, seconds: float) -> None:
    settings = make_settings(db_url, routing=ROUTING, correlation={"quiet_period_seconds": QUIET})
    engine = create_db_engine(db_url)
    try:
        maintain(make_session_factory(engine), settings, now=utcnow() + timedelta(seconds=seconds))
    finally:
        engine.dispose()


def timeline(pipe: Pipeline, incident_id: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = pipe.incident(incident_id)["timeline"]
    return entries


def test_resolved_alerts_monitor_then_resolve_by_themselves(pipe: Pipeline, db_url: str) -> None:
    t0 = recent(10)
    pipe.post(alert("user-service", "LoginErrors", t0, "P1"))
    [incident] = pipe.live()
    iid = incident["id"]
    pipe.post(alert("user-service", "LoginErrors", t0, "P1", resolved_at=recent(1)))

    monitoring = pipe.incident(iid)
    assert (monitoring["state"], monitoring["status"]) == ("monitoring", "open")
    [auto] = [e for e in timeline(pipe, iid) if e["kind"] == "status_changed"]
    assert "resolves by itself" in auto["message"] and auto["data"]["auto"] is True

    upkeep_after(db_url, QUIET / 2)  # not yet
    assert pipe.incident(iid)["state"] == "monitoring"
    upkeep_after(db_url, QUIET + 1)
    done = pipe.incident(iid)
    assert (done["state"], done["status"]) == ("resolved", "resolved")
    [resolved] = [e for e in timeline(pipe, iid) if e["kind"] == "resolved"]
    assert "quiet period" in resolved["message"]
    assert "resolved" in {n["event"] for n in notifications(pipe, iid)}
    upkeep_after(db_url, QUIET + 2)  # once only
    assert [e["kind"] for e in timeline(pipe, iid)].count("resolved") == 1


@pytest.mark.parametrize("acknowledged", [False, True])
def test_an_alert_firing_again_takes_the_incident_back(
    pipe: Pipeline, db_url: str, acknowledged: bool
) -> None:
    t0 = recent(10)
    pipe.post(alert("user-service", "LoginErrors", t0, "P1"))
    [incident] = pipe.live()
    iid = incident["id"]
    if acknowledged:
        response = pipe.client.post(f"/api/v1/incidents/{iid}/acknowledge", headers=AUTH)
        assert response.status_code == 200, response.text
    pipe.post(alert("user-service", "LoginErrors", t0, "P1", resolved_at=recent(2)))
    assert pipe.incident(iid)["state"] == "monitoring"
    pages_before = [n["event"] for n in notifications(pipe, iid)]

    pipe.post(alert("user-service", "LoginErrors", recent(1), "P1"))

    back = pipe.incident(iid)
    assert [i["id"] for i in pipe.live()] == [iid]  # the same incident, no new one
    assert back["state"] == ("acknowledged" if acknowledged else "triggered")
    assert back["status"] == "open"
    [again] = [e for e in timeline(pipe, iid) if e["kind"] == "reopened"]
    assert "quiet period" in again["message"]
    # Paged already: no new page for the same incident.
    pages_after = [n["event"] for n in notifications(pipe, iid)]
    assert [e for e in pages_after if e in ("opened", "reopened")] == [
        e for e in pages_before if e in ("opened", "reopened")
    ]
    upkeep_after(db_url, QUIET + 1)  # the period was interrupted: nothing resolves
    assert pipe.incident(iid)["status"] == "open"
