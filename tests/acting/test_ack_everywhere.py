"""An acknowledgement from a text, a Slack button or a key press on a call reaches every
channel as one from the API does: the incident's Slack message is edited, the incident's
email thread gets a reply, and escalation stops (no later level pages)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import make_session_factory, utcnow
from incidents.escalation import engine
from incidents.models import INCIDENTS
from tests.acting.stage import ALICE, BOB, Stage, start
from tests.notify.fake_slack import FakeSlack
from tests.notify.fake_twilio import FakeTwilio
from tests.notify.smtp_server import SmtpServer
from tests.notify.test_routing_stage import wait_until

Mailed = tuple[Stage, SmtpServer]


@pytest.fixture
def mailed(db_url: str, client_for: Callable[..., TestClient]) -> Iterator[Mailed]:
    with FakeSlack() as slack, FakeTwilio() as twilio, SmtpServer() as smtp:
        made = start(db_url, client_for, slack, twilio, smtp)
        yield made, smtp
        made.pipe.close()


def later(minutes: float) -> datetime:
    return utcnow() + timedelta(minutes=minutes)


def escalated(stage: Stage, incident_id: int) -> list[int]:
    entries = stage.state(incident_id)["timeline"]
    return [e["data"]["level"] for e in entries if e["kind"] == "escalated"]


def mails(smtp: SmtpServer) -> list[EmailMessage]:
    return [m.message for m in smtp.messages]


def acknowledge(stage: Stage, how: str, incident_id: int) -> str:
    """Acknowledge as alice, from `how`; what she is answered."""
    if how == "sms":
        stage.wait_texts(ALICE, 1)  # her page: code 1
        return stage.sms(ALICE, "1a").text
    if how == "slack":
        response = stage.click("U0ALICE", "acknowledge", incident_id)
        return str(response.json()["text"])
    return stage.press(ALICE, incident_id, "1").text


@pytest.mark.parametrize("how", ["sms", "slack", "voice"])
def test_an_acknowledgement_edits_slack_replies_by_email_and_stops_escalation(
    mailed: Mailed, how: str
) -> None:
    stage, smtp = mailed
    sessions: sessionmaker[Session] = make_session_factory(stage.pipe.engine)
    iid = stage.page("database-postgres")
    wait_until("the slack page", lambda: len(stage.slack.top_level()) >= 1)
    wait_until("the first mail", lambda: len(mails(smtp)) >= 1)
    [first] = mails(smtp)
    assert first["Subject"].startswith("[P0] #")

    # Level 1 (alice) pages as the incident opens; the embedded sweep may run it first.
    wait_until("level 1", lambda: engine.run_due(sessions).steps >= 0 and escalated(stage, iid))
    assert escalated(stage, iid) == [1]

    answer = acknowledge(stage, how, iid)
    assert f"Acknowledged #{iid}" in answer
    assert stage.state(iid)["acknowledged_by"] == f"alice (via {how})"

    # (a) The incident's Slack message is edited: acknowledged, no Acknowledge button.
    def edited() -> bool:
        return any("acknowledged" in c.body["text"] for c in stage.slack.calls("chat.update"))

    wait_until("the slack edit", edited)
    edit = [c for c in stage.slack.calls("chat.update") if "acknowledged" in c.body["text"]][-1]
    buttons = [e["action_id"] for b in edit.body["blocks"] for e in b.get("elements", [])]
    assert "acknowledge" not in buttons and "resolve" in buttons

    # (b) A reply in the incident's email thread.
    def replied() -> list[EmailMessage]:
        return [m for m in mails(smtp) if m["Subject"].startswith("Acknowledged")]

    wait_until("the email reply", lambda: bool(replied()))
    [reply] = replied()
    assert f"#{iid}" in reply["Subject"]
    assert reply["In-Reply-To"] == first["Message-ID"]
    assert first["Message-ID"] in reply["References"].split()

    # (c) No later level: bob is never paged by the policy, however long nobody else acts.
    for minutes in (5.1, 15.2, 60):
        assert engine.run_due(sessions, later(minutes)).steps == 0
    assert escalated(stage, iid) == [1]
    with stage.pipe.engine.connect() as conn:
        due = conn.execute(
            sa.select(INCIDENTS.c.escalation_due_at).where(INCIDENTS.c.id == iid)
        ).scalar_one()
        paged = conn.execute(
            sa.text(
                "SELECT target FROM notifications WHERE incident_id = :i "
                "AND event_key LIKE 'escalation:%'"
            ),
            {"i": iid},
        ).scalars()
        assert BOB not in set(paged)
    assert due is None
