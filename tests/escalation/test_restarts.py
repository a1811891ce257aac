"""A ladder that starts again or carries on: a reopened incident (by hand, or by its alert
firing again after it resolved) is escalated again from level 1 and the people paged by
the last run are paged again, with notifications of their own rather than the last run's,
which the outbox would take for duplicates; an alert firing again during the quiet
period carries an unacknowledged incident's ladder on where it stopped. Time is the `now`
the sweep is run with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import utcnow
from incidents.escalation import engine
from incidents.models import INCIDENTS, Incident
from incidents.pipeline import quiet
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
    start,
)
from tests.notify.fake_slack import FakeSlack
from tests.notify.fake_twilio import FROM_NUMBER, FakeTwilio
from tests.notify.test_routing_stage import notifications, wait_until

ALICE, BOB = "+15551230001", "+15551230002"
LEVEL_1 = {("sms", ALICE), ("slack", "U0ALICE")}
LEVEL_2 = {("sms", BOB), ("voice", BOB)}  # bob's rules: a text, a call 2 minutes later
SERVICE, NAME = "database-postgres", "database-postgres-down"


def keyed(
    sessions: sessionmaker[Session], incident_id: int, key: str
) -> dict[tuple[str, str], str]:
    """The incident's escalation notifications with this key: (channel, target) -> status."""
    return {(c, t): s for k, c, t, s in rows(sessions, incident_id) if k == key}


@pytest.fixture
def resolving(db_url: str, client_for: Callable[..., TestClient]) -> Iterator[Pipeline]:
    """No quiet period: an incident resolves as soon as its alerts do."""
    pipeline = start(db_url, client_for, quiet_seconds=0)
    yield pipeline
    pipeline.close()


@pytest.fixture
def quiet_pipe(db_url: str, client_for: Callable[..., TestClient]) -> Iterator[Pipeline]:
    """A 10-minute quiet period."""
    pipeline = start(db_url, client_for, quiet_seconds=600)
    yield pipeline
    pipeline.close()


def act(pipe: Pipeline, incident_id: int, action: str) -> None:
    response = pipe.client.post(
        f"/api/v1/incidents/{incident_id}/{action}", json={"by": "bob"}, headers=AUTH
    )
    assert response.status_code == 200, response.text


def due_at(sessions: sessionmaker[Session], incident_id: int) -> object:
    with sessions() as session:
        return session.scalar(
            sa.select(INCIDENTS.c.escalation_due_at).where(INCIDENTS.c.id == incident_id)
        )


def test_an_incident_reopened_by_hand_is_paged_again_from_level_1(
    pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    iid = page(pipe)
    assert engine.run_due(sessions).steps == 1
    assert engine.run_due(sessions, later(5.1)).steps == 1
    assert set(keyed(sessions, iid, "escalation:0:0:0")) == LEVEL_1
    assert set(keyed(sessions, iid, "escalation:0:0:1")) == LEVEL_2
    act(pipe, iid, "resolve")
    act(pipe, iid, "reopen")

    assert engine.run_due(sessions, later(0.05)).steps == 1
    # New rows, waiting to go out: alice is paged again, not just said to be.
    assert keyed(sessions, iid, "escalation:1:0:0") == dict.fromkeys(LEVEL_1, "pending")
    assert engine.run_due(sessions, later(5.2)).steps == 1
    assert keyed(sessions, iid, "escalation:1:0:1") == dict.fromkeys(LEVEL_2, "pending")
    # Each run's entries (the sweeps ran at made-up times: the timeline is in time order).
    entries = escalated(pipe, iid)
    assert sorted(e["data"]["level"] for e in entries) == [1, 1, 2, 2]
    for entry in entries:
        paged = {(p["channel"], p["target"]) for p in entry["data"]["paged"]}
        assert paged == (LEVEL_1 if entry["data"]["level"] == 1 else LEVEL_2)
    # Acknowledging stops the new run too: bob's call, due later, is cancelled.
    act(pipe, iid, "acknowledge")
    assert keyed(sessions, iid, "escalation:1:0:1")[("voice", BOB)] == "cancelled"
    assert engine.run_due(sessions, later(60)).steps == 0


def delivered(pipe: Pipeline, incident_id: int) -> None:
    """Until the incident's notifications went out (a sweep meanwhile may pass over the
    incident on PostgreSQL: a delivery's writes lock its row)."""

    def done() -> bool:
        statuses = {n["status"] for n in notifications(pipe, incident_id)}
        return not statuses & {"pending", "sending"}

    wait_until(f"incident {incident_id}'s notifications to go out", done, timeout=30)


def test_a_reopened_incident_texts_level_1_again(
    db_url: str, client_for: Callable[..., TestClient], sessions: sessionmaker[Session]
) -> None:
    with FakeSlack() as slack, FakeTwilio() as twilio:
        client = client_for(
            db_url,
            routing=ROUTING,
            slack_bot_token=slack.token,
            slack_api_url=slack.api_url,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_from_number=FROM_NUMBER,
            twilio_api_url=twilio.url,
            correlation={"open_hold_seconds": 0},
            pipeline={"escalation_sweep_seconds": 60},
        )
        sending = Pipeline(client, db_url)
        try:
            sending.load_graph()
            put(sending, "/api/v1/users", USERS)
            put(sending, "/api/v1/schedules", SCHEDULES)
            put(sending, "/api/v1/escalation-policies", {"policies": [LADDER]})

            def pages_to_alice() -> list[str]:
                texts = [m["Body"] for m in twilio.messages() if m["To"] == ALICE]
                return [t for t in texts if not t.startswith("RESOLVED")]

            iid = page(sending)
            delivered(sending, iid)
            assert engine.run_due(sessions).steps == 1
            wait_until("alice's first page", lambda: len(pages_to_alice()) == 1)
            act(sending, iid, "resolve")
            act(sending, iid, "reopen")
            delivered(sending, iid)
            assert engine.run_due(sessions, later(0.05)).steps == 1
            wait_until("alice's page after the reopen", lambda: len(pages_to_alice()) == 2)
            delivered(sending, iid)
            # The text is the new run's own row (the fake Slack knows no direct messages).
            assert keyed(sessions, iid, "escalation:1:0:0")[("sms", ALICE)] == "sent"
        finally:
            sending.close()


def test_an_incident_reopened_by_its_alert_firing_again_is_paged_again(
    resolving: Pipeline, sessions: sessionmaker[Session]
) -> None:
    t0 = recent(3)
    resolving.post(alert(SERVICE, NAME, t0, "P0"))
    [incident] = [i for i in resolving.live() if SERVICE in i["services"]]
    iid = int(incident["id"])
    assert engine.run_due(sessions).steps == 1
    resolving.post(alert(SERVICE, NAME, t0, "P0", resolved_at=recent(2)))
    assert resolving.incident(iid)["state"] == "resolved"
    resolving.post(alert(SERVICE, NAME, recent(1), "P0"))
    assert resolving.incident(iid)["state"] == "triggered"

    assert engine.run_due(sessions, later(0.05)).steps == 1
    assert keyed(sessions, iid, "escalation:0:0:0") == dict.fromkeys(LEVEL_1, "cancelled")
    assert keyed(sessions, iid, "escalation:1:0:0") == dict.fromkeys(LEVEL_1, "pending")
    assert [e["data"]["level"] for e in escalated(resolving, iid)] == [1, 1]


def test_an_alert_firing_again_in_the_quiet_period_carries_the_ladder_on(
    quiet_pipe: Pipeline, sessions: sessionmaker[Session]
) -> None:
    t0 = recent(1)
    quiet_pipe.post(alert(SERVICE, NAME, t0, "P0"))
    [incident] = [i for i in quiet_pipe.live() if SERVICE in i["services"]]
    iid = int(incident["id"])
    assert engine.run_due(sessions).steps == 1  # level 1; level 2 in 5 minutes
    deadline = due_at(sessions, iid)
    quiet_pipe.post(alert(SERVICE, NAME, t0, "P0", resolved_at=recent(0.5)))
    assert quiet_pipe.incident(iid)["state"] == "monitoring"
    assert due_at(sessions, iid) is None
    assert engine.run_due(sessions, later(6)).steps == 0  # quiet: nobody is paged

    quiet_pipe.post(alert(SERVICE, NAME, recent(0.2), "P0"))
    assert quiet_pipe.incident(iid)["state"] == "triggered"
    # Level 1's wait still runs: level 2 is due when it was, not earlier.
    assert due_at(sessions, iid) == deadline
    [back] = [e for e in quiet_pipe.incident(iid)["timeline"] if e["kind"] == "reopened"]
    assert "escalation resumes" in back["message"]
    assert engine.run_due(sessions, later(4)).steps == 0
    assert engine.run_due(sessions, later(5.1)).steps == 1
    assert keyed(sessions, iid, "escalation:0:0:1") == dict.fromkeys(LEVEL_2, "pending")
    assert [e["data"]["level"] for e in escalated(quiet_pipe, iid)] == [1, 2]
    assert engine.run_due(sessions, later(15.2)).steps == 1  # and on to level 3


def test_a_deadline_that_passed_in_the_quiet_period_is_due_at_once() -> None:
    now = utcnow()
    state = {"policy": LADDER, "level": 1, "round": 0}
    passed = Incident(escalation={**state, "paused_due": (now - timedelta(minutes=3)).isoformat()})
    assert "escalation resumes" in quiet.resume_escalation(passed, now)
    assert passed.escalation_due_at == now and "paused_due" not in (passed.escalation or {})
    coming = now + timedelta(minutes=3)
    later_one = Incident(escalation={**state, "paused_due": coming.isoformat()})
    quiet.resume_escalation(later_one, now)
    assert later_one.escalation_due_at == coming
    over = Incident(escalation={**state, "done": True})
    assert quiet.resume_escalation(over, now) == "" and over.escalation_due_at is None
