"""Escalation: the ladder climbs while nobody acknowledges, stops when someone does, falls
back on a schedule gap, survives a worker dying between steps, and never runs a step twice
with two sweepers. Time is the `now` the sweep is run with; nothing sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.escalation import engine
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH
from tests.escalation.ladder import (
    LADDER,
    ROUTING,
    SCHEDULES,
    USERS,
    escalated,
    later,
    page,
    put,
    rows,
)


def test_the_ladder_climbs_from_level_1_to_3_while_nobody_acknowledges(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    iid = page(pipe)
    assert engine.run_due(sessions).steps == 1  # level 1 is due as the page goes out
    assert {(c, t) for _, c, t, _ in rows(sessions, iid)} == {
        ("sms", "+15551230001"),
        ("slack", "U0ALICE"),
    }
    assert engine.run_due(sessions, later(4)).steps == 0  # not yet
    assert engine.run_due(sessions, later(5.1)).steps == 1  # level 2: bob, by his rules
    bob = [(c, t) for k, c, t, _ in rows(sessions, iid) if k == "escalation:0:0:1"]
    assert bob == [("sms", "+15551230002"), ("voice", "+15551230002")]
    assert engine.run_due(sessions, later(15.2)).steps == 1  # level 3
    assert ("slack", "#escalations") in {(c, t) for _, c, t, _ in rows(sessions, iid)}
    assert engine.run_due(sessions, later(120)).steps == 0  # exhausted: repeat 0
    entries = escalated(pipe, iid)
    assert [e["data"]["level"] for e in entries] == [1, 2, 3]
    assert "schedule primary (alice)" in entries[0]["message"]
    assert entries[-1]["data"]["done"] is True and "exhausted" in entries[-1]["message"]


def test_acknowledging_stops_the_ladder_and_cancels_later_steps(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    iid = page(pipe)
    engine.run_due(sessions)
    engine.run_due(sessions, later(5.1))  # bob: a text now, a call in 2 minutes
    response = pipe.client.post(
        f"/api/v1/incidents/{iid}/acknowledge", json={"by": "bob"}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert engine.run_due(sessions, later(60)).steps == 0
    assert len(escalated(pipe, iid)) == 2
    [call] = [r for r in rows(sessions, iid) if r[1] == "voice"]
    assert call[3] == "cancelled"


def test_a_schedule_gap_pages_the_fallback_and_says_so(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    gap = dict(LADDER, levels=[{"targets": [{"schedule": "sparse"}]}])
    put(pipe, "/api/v1/escalation-policies", {"policies": [gap]})
    iid = page(pipe)
    engine.run_due(sessions)
    assert {(c, t) for _, c, t, _ in rows(sessions, iid)} == {("email", "carol@example.com")}
    [entry] = escalated(pipe, iid)
    assert "nobody on call, paged the fallback (carol)" in entry["message"]


def test_the_root_cause_teams_on_call_is_paged(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    owner = dict(LADDER, levels=[{"targets": [{"root_team_oncall": True}]}])
    put(pipe, "/api/v1/escalation-policies", {"policies": [owner]})
    iid = page(pipe, "database-postgres")  # owned by team data-platform: dana's schedule
    engine.run_due(sessions)
    assert {(c, t) for _, c, t, _ in rows(sessions, iid)} == {("sms", "+15551230004")}


def test_a_running_escalation_keeps_the_policy_it_started_with(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    iid = page(pipe)
    engine.run_due(sessions)
    changed = dict(LADDER, levels=[{"targets": [{"user": "carol"}]}])
    put(pipe, "/api/v1/escalation-policies", {"policies": [changed]})
    engine.run_due(sessions, later(5.1))
    assert escalated(pipe, iid)[-1]["data"]["level"] == 2  # still the old ladder: bob
    assert "user bob" in escalated(pipe, iid)[-1]["message"]


def test_a_worker_dying_mid_step_leaves_the_step_to_run_once_later(
    pipe: Pipeline, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    iid = page(pipe)

    def dies(*_: Any) -> None:
        raise SystemExit("killed")  # what a killed worker's transaction amounts to

    with monkeypatch.context() as patched:
        patched.setattr(engine, "insert_rows", dies)
        with pytest.raises(SystemExit):
            engine.run_due(sessions)
    assert escalated(pipe, iid) == [] and rows(sessions, iid) == []
    assert engine.run_due(sessions).steps == 1
    assert engine.run_due(sessions).steps == 0
    assert len(escalated(pipe, iid)) == 1


@pytest.mark.postgres
def test_two_sweepers_at_once_never_run_one_step_twice(
    pg_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(
        pg_url,
        routing=ROUTING,
        correlation={"open_hold_seconds": 0, "hops": 0, "max_new_incidents_per_minute": 0},
        notify={"enabled": False},
        pipeline={"escalation_sweep_seconds": 60},
    )
    pipe = Pipeline(client, pg_url)
    put(pipe, "/api/v1/users", USERS)
    put(pipe, "/api/v1/schedules", SCHEDULES)
    put(pipe, "/api/v1/escalation-policies", {"policies": [LADDER]})
    pipe.post(*(alert(f"svc-{i}", "Down", recent(1), "P0") for i in range(120)))
    bound = create_db_engine(pg_url)
    sessions = make_session_factory(bound)
    results: list[int] = []

    def sweeper() -> None:
        results.append(engine.run_due(sessions, later(0.1)).steps)

    threads = [threading.Thread(target=sweeper) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with bound.connect() as conn:
        per_incident = conn.execute(
            sa.text(
                "SELECT incident_id, count(*) FROM timeline WHERE kind = 'escalated' "
                "GROUP BY incident_id"
            )
        ).all()
    bound.dispose()
    pipe.close()
    assert sum(results) == 120
    assert len(per_incident) == 120 and {n for _, n in per_incident} == {1}


def test_policies_round_trip_and_bad_ones_name_the_path(pipe: Pipeline) -> None:
    got = pipe.client.get("/api/v1/escalation-policies", headers=AUTH).json()
    assert got["policies"][0]["name"] == "p0"
    unknown = dict(LADDER, levels=[{"targets": [{"user": "zed"}]}])
    response = pipe.client.put(
        "/api/v1/escalation-policies", json={"policies": [unknown]}, headers=AUTH
    )
    assert response.status_code == 422 and "policies[0].levels[0].targets[0].user" in response.text
    gapping_fallback = dict(LADDER, fallback=[{"schedule": "primary"}])
    response = pipe.client.put(
        "/api/v1/escalation-policies", json={"policies": [gapping_fallback]}, headers=AUTH
    )
    assert response.status_code == 422 and "fallback targets must be users" in response.text
    too_fast = dict(LADDER, levels=[{"wait": "1s", "targets": [{"user": "bob"}]}])
    response = pipe.client.put(
        "/api/v1/escalation-policies", json={"policies": [too_fast]}, headers=AUTH
    )
    assert response.status_code == 422 and "5s" in response.text


def test_metrics_show_a_stalled_escalator(pipe: Pipeline, sessions: sessionmaker[Session]) -> None:
    iid = page(pipe)
    from incidents.models import INCIDENTS

    with sessions.begin() as session:
        session.execute(
            sa.update(INCIDENTS)
            .where(INCIDENTS.c.id == iid)
            .values(escalation_due_at=utcnow() - timedelta(minutes=10))
        )
    text = pipe.client.get("/metrics").text
    assert "incidents_escalation_steps_overdue 1.0" in text
    [age] = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("incidents_escalation_oldest_overdue_seconds")
    ]
    assert 590 < age < 700
