"""The escalation document as other tools use it (PUT takes the documented shape, GET
gives the same back), a gap with no fallback still pages someone and says so, and the
ladder's rules: `repeat`, the default wait by severity, team targets, and a receiver
with no policy paging once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.escalation import engine
from incidents.models import INCIDENTS
from tests.api.incident_pipe import Pipeline
from tests.conftest import AUTH
from tests.escalation.ladder import escalated, later, page, put, rows, start

# The document, exactly.
CONTRACT = {
    "policies": [
        {
            "name": "p0",
            "repeat": 1,
            "levels": [
                {
                    "wait": "5m",
                    "targets": [{"schedule": "primary"}, {"slack_channel": "#incidents-critical"}],
                },
                {"wait": "10m", "targets": [{"user": "carol"}]},
            ],
        }
    ]
}
# P0, P1 and P2 all escalate by policy p0; anything else goes to the console only.
EVERY_SEVERITY = {
    "receivers": [
        {"name": "default", "console": ["stdout"]},
        {"name": "critical", "slack": ["#incidents-critical"], "escalation_policy": "p0"},
    ],
    "route": {
        "receiver": "default",
        "routes": [{"matchers": ['severity=~"P0|P1|P2"'], "receiver": "critical"}],
    },
}


def policy(**fields: Any) -> dict[str, Any]:
    return {"policies": [{"name": "p0", **fields}]}


def test_the_documented_body_is_taken_and_given_back_as_it_was(pipe: Pipeline) -> None:
    assert put(pipe, "/api/v1/escalation-policies", CONTRACT) == CONTRACT
    got = pipe.client.get("/api/v1/escalation-policies", headers=AUTH)
    assert got.status_code == 200 and got.json() == CONTRACT
    # What a client left out stays out; what it said (a fallback, a wait) comes back.
    fuller = policy(levels=[{"targets": [{"user": "bob"}]}], fallback=[{"user": "carol"}])
    put(pipe, "/api/v1/escalation-policies", fuller)
    assert pipe.client.get("/api/v1/escalation-policies", headers=AUTH).json() == fuller


def test_a_gap_without_a_fallback_pages_the_rotation_and_says_so(
    pipe: Pipeline, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    put(pipe, "/api/v1/escalation-policies", policy(levels=[{"targets": [{"schedule": "sparse"}]}]))
    iid = page(pipe)
    with caplog.at_level(logging.WARNING, logger="incidents.escalation.engine"):
        assert engine.run_due(sessions).steps == 1
    # Everyone in the gapped schedule's rotation: dana, by text.
    assert {(c, t) for _, c, t, _ in rows(sessions, iid)} == {("sms", "+15551230004")}
    [entry] = escalated(pipe, iid)
    assert (
        "schedule sparse (nobody): nobody on call, the policy names no fallback: paged "
        "everyone in the rotations (dana)" in entry["message"]
    )
    assert entry["data"]["gaps"] == [{"target": "schedule sparse", "covered_by": "rotation"}]
    assert "nobody on call" in caplog.text and f"incident {iid}" in caplog.text
    # And the schedule's gap is an error of the schedules document.
    problems = pipe.client.get("/api/v1/schedules", headers=AUTH).json()["problems"]
    assert any(p["schedule"] == "sparse" for p in problems)


def test_a_root_cause_with_no_team_pages_the_policys_own_users(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    levels = [{"targets": [{"root_team_oncall": True}]}, {"targets": [{"user": "carol"}]}]
    put(pipe, "/api/v1/escalation-policies", policy(levels=levels))
    iid = page(pipe, "no-such-service")  # not in the graph: no team owns it
    engine.run_due(sessions)
    assert {(c, t) for _, c, t, _ in rows(sessions, iid)} == {("email", "carol@example.com")}
    [entry] = escalated(pipe, iid)
    assert "paged the policy's users and channels (carol)" in entry["message"]
    assert entry["data"]["gaps"][0]["covered_by"] == "policy"


def test_repeat_runs_the_whole_ladder_again_then_stops(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    levels = [
        {"wait": "5m", "targets": [{"user": "alice"}]},
        {"wait": "5m", "targets": [{"user": "carol"}]},
    ]
    put(pipe, "/api/v1/escalation-policies", policy(repeat=1, levels=levels))
    iid = page(pipe)
    assert engine.run_due(sessions).steps == 1
    for minutes in (5.1, 10.2, 15.3):
        assert engine.run_due(sessions, later(minutes)).steps == 1
    assert engine.run_due(sessions, later(120)).steps == 0
    steps = [(e["data"]["level"], e["data"]["round"]) for e in escalated(pipe, iid)]
    assert steps == [(1, 1), (2, 1), (1, 2), (2, 2)]
    assert escalated(pipe, iid)[-1]["data"]["done"] is True
    assert "level 2 of 2, round 2 of 2" in escalated(pipe, iid)[-1]["message"]


@pytest.fixture
def every_severity(db_url: str, client_for: Callable[..., TestClient]) -> Iterator[Pipeline]:
    pipeline = start(db_url, client_for, EVERY_SEVERITY)
    yield pipeline
    pipeline.close()


def due_at(sessions: sessionmaker[Session], incident_id: int) -> datetime:
    with sessions() as session:
        due = session.execute(
            sa.select(INCIDENTS.c.escalation_due_at).where(INCIDENTS.c.id == incident_id)
        ).scalar_one()
    assert due is not None
    return due.replace(tzinfo=None)


def test_a_level_without_a_wait_waits_for_the_severitys_response_target(
    every_severity: Pipeline, sessions: sessionmaker[Session]
) -> None:
    levels = [{"targets": [{"user": "alice"}]}, {"targets": [{"user": "carol"}]}]
    put(every_severity, "/api/v1/escalation-policies", policy(levels=levels))
    ids = {sev: page(every_severity, f"svc-{sev.lower()}", sev) for sev in ("P0", "P1", "P2")}
    now = later(0.1)
    assert engine.run_due(sessions, now).steps == 3
    waits = {sev: due_at(sessions, iid) - now.replace(tzinfo=None) for sev, iid in ids.items()}
    assert waits == {
        "P0": timedelta(minutes=5),
        "P1": timedelta(minutes=15),
        "P2": timedelta(minutes=60),
    }


def test_a_team_target_pages_the_teams_on_call(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    team = policy(levels=[{"targets": [{"team": "data-platform"}]}])
    put(pipe, "/api/v1/escalation-policies", team)
    iid = page(pipe, "no-such-service")
    engine.run_due(sessions)
    assert {(c, t) for _, c, t, _ in rows(sessions, iid)} == {("sms", "+15551230004")}
    [entry] = escalated(pipe, iid)
    assert "team data-platform's on-call (dana)" in entry["message"]
    assert entry["data"]["gaps"] == []


def test_a_receiver_without_a_policy_notifies_once_and_never_escalates(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    iid = page(pipe, "no-such-service", "P2")  # the default receiver: console, no policy
    for minutes in (0, 5.1, 30, 240):
        assert engine.run_due(sessions, later(minutes)).steps == 0
    with sessions() as session:
        state = session.execute(
            sa.select(INCIDENTS.c.escalation, INCIDENTS.c.escalation_due_at).where(
                INCIDENTS.c.id == iid
            )
        ).one()
        sent = session.execute(
            sa.text("SELECT event, channel FROM notifications WHERE incident_id = :i"), {"i": iid}
        ).all()
    assert state.escalation is None and state.escalation_due_at is None
    assert [tuple(r) for r in sent] == [("opened", "console")]
    assert escalated(pipe, iid) == []
