"""From webhook to Slack: the routing stage writes the outbox in the pipeline's
transaction, the embedded notify worker sends through the real slack-sdk to a local
Slack stand-in. On SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH
from tests.notify.fake_slack import FakeSlack

ROUTING: dict[str, Any] = {
    "receivers": [
        {"name": "default", "console": ["stdout"]},
        {"name": "critical", "slack": ["#incidents-critical"]},
        {"name": "chat", "slack": ["#incidents"]},
    ],
    "route": {
        "receiver": "default",
        "routes": [
            {"matchers": ['severity="P0"'], "receiver": "critical"},
            {"matchers": ['severity=~"P1|P2"'], "receiver": "chat"},
        ],
    },
}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def start(
    db_url: str,
    client_for: Callable[..., TestClient],
    slack: FakeSlack,
    hold: float,
    routing: dict[str, Any] = ROUTING,
) -> Pipeline:
    """The service on `db_url`, sending to the fake Slack, with this opening hold."""
    client = client_for(
        db_url,
        routing=routing,
        slack_bot_token=slack.token,
        slack_api_url=slack.api_url,
        correlation={"open_hold_seconds": hold},
        notify={"public_url": "http://incidents.test"},
    )
    return Pipeline(client, db_url)


def notifications(pipe: Pipeline, incident_id: int) -> list[dict[str, Any]]:
    response = pipe.client.get(f"/api/v1/incidents/{incident_id}/notifications", headers=AUTH)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


def wait_until(what: str, check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_p0_pages_its_slack_channel_once_and_symptoms_update_it(
    db_url: str, client_for: Callable[..., TestClient], slack: FakeSlack
) -> None:
    pipe = start(db_url, client_for, slack, hold=0)
    pipe.load_graph()
    t0 = recent(5)
    pipe.post(alert("database-postgres", "PostgresDown", t0, "P0"))
    [incident] = pipe.live()
    wait_until("the page", lambda: len(slack.calls("chat.postMessage")) == 1)
    [post] = slack.calls("chat.postMessage")
    assert post.body["channel"] == "#incidents-critical"
    assert "PostgresDown" in post.body["text"]
    [sent] = notifications(pipe, incident["id"])
    wait_until("the record", lambda: notifications(pipe, incident["id"])[0]["status"] == "sent")
    sent = notifications(pipe, incident["id"])[0]
    assert (sent["event"], sent["channel"], sent["target"]) == (
        "opened",
        "slack",
        "#incidents-critical",
    )
    assert sent["provider_id"] and sent["attempts"] == 1
    metrics = pipe.client.get("/metrics").text
    assert 'incidents_notifications{channel="slack",status="sent"} 1.0' in metrics
    assert 'incidents_notify_lag_seconds{channel="slack"} 0.0' in metrics

    # A symptom joins: the message is edited and a reply added, never a new post.
    pipe.post(alert("user-service", "LoginErrors", t0 + timedelta(seconds=10), "P1"))
    wait_until("the update", lambda: len(slack.calls("chat.update")) == 1)
    wait_until("the reply", lambda: len(slack.calls("chat.postMessage")) == 2)
    assert len(slack.top_level()) == 1
    reply = slack.calls("chat.postMessage")[1]
    assert reply.body["thread_ts"] == post_ts(slack)
    assert "user-service" in reply.body["text"]


def post_ts(slack: FakeSlack) -> str:
    [message] = slack.top_level()
    return message.ts


def test_an_opening_page_waits_for_the_hold_and_a_merge_cancels_it(
    db_url: str, client_for: Callable[..., TestClient], slack: FakeSlack
) -> None:
    pipe = start(db_url, client_for, slack, hold=30)
    pipe.load_graph()
    t0 = recent(5)
    pipe.post(alert("notification-service", "NotifyLag", t0, "P2"))
    pipe.post(alert("feedback-service", "FeedbackErrors", t0 + timedelta(seconds=5), "P2"))
    pipe.post(alert("database-postgres", "PostgresDown", t0 + timedelta(seconds=10), "P0"))
    [survivor] = pipe.live()
    [merged] = pipe.incidents(status="merged")
    [held] = [n for n in notifications(pipe, survivor["id"]) if n["event"] == "opened"]
    # The survivor is a P0 now: its held page goes to the P0 route's channel.
    assert held["status"] == "pending" and held["target"] == "#incidents-critical"
    [cancelled] = notifications(pipe, merged["id"])
    assert cancelled["status"] == "cancelled"
    assert f"folded into incident {survivor['id']}" in cancelled["error"]
    time.sleep(0.5)
    assert slack.calls("chat.postMessage") == []  # nothing goes out during the hold


def test_an_incident_is_one_email_thread_from_opened_to_resolved(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    from tests.notify.smtp_server import SmtpServer

    routing = {
        "receivers": [{"name": "mail", "email": ["oncall@example.com"]}],
        "route": {"receiver": "mail"},
    }
    with SmtpServer() as smtp:
        client = client_for(
            db_url,
            routing=routing,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_tls="none",
            smtp_from="incidents@example.com",
            correlation={"open_hold_seconds": 0},
        )
        pipe = Pipeline(client, db_url)
        t0 = recent(5)
        pipe.post(alert("billing", "InvoicesStuck", t0, "P1"))
        wait_until("the first mail", lambda: len(smtp.messages) == 1)
        pipe.post(
            alert("billing", "InvoicesStuck", t0, "P1", resolved_at=t0 + timedelta(minutes=1))
        )
        wait_until("the second mail", lambda: len(smtp.messages) == 2)
        first, second = (m.message for m in smtp.messages)
        assert first["Subject"].startswith("[P1] #")
        assert "InvoicesStuck on billing" in first["Subject"]
        assert second["Subject"].startswith("RESOLVED")
        assert second["In-Reply-To"] == first["Message-ID"]
        [incident] = pipe.incidents()
        statuses = [n["status"] for n in notifications(pipe, incident["id"])]
        wait_until(
            "both recorded",
            lambda: [n["status"] for n in notifications(pipe, incident["id"])] == ["sent", "sent"],
        )
        assert len(statuses) == 2


def test_digest_receivers_get_one_email_a_day_listing_their_incidents(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    import sqlalchemy as sa

    from incidents.db import create_db_engine, make_session_factory, utcnow
    from incidents.notify.base import build
    from incidents.notify.digest import send_digests
    from tests.notify.smtp_server import SmtpServer

    routing = {
        "receivers": [{"name": "daily", "email": ["oncall@example.com"], "digest": "daily"}],
        "route": {"receiver": "daily"},
    }
    pipe = Pipeline(client_for(db_url, routing=routing, notify={"enabled": False}), db_url)
    t0 = recent(5)
    pipe.post(alert("billing", "InvoicesSlow", t0, "P3"), alert("ledger", "LedgerLag", t0, "P3"))
    incidents = pipe.incidents()
    assert len(incidents) == 2
    waiting = [n for i in incidents for n in notifications(pipe, i["id"])]
    assert [n["status"] for n in waiting] == ["digest", "digest"]
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    with SmtpServer() as smtp:
        email = build("email", {"host": smtp.host, "port": smtp.port, "tls": "none"})
        # The digest hour is the coming one: nothing routed now is due before it.
        hour = (utcnow().hour + 1) % 24
        assert send_digests(sessions, email, hour=hour, public_url="") == 0
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE notifications SET created_at = :t"),
                {"t": t0 - timedelta(days=1)},
            )
        assert send_digests(sessions, email, hour=hour, public_url="http://incidents.test") == 1
        [mail] = smtp.messages
        assert mail.message["Subject"] == "[P3] Daily digest: 2 incident(s) since the last digest"
        body = mail.message.get_body(preferencelist=("plain",))
        assert body is not None
        text = body.get_content()
        assert "InvoicesSlow on billing" in text and "LedgerLag on ledger" in text
        assert send_digests(sessions, email, hour=hour, public_url="") == 0  # once a day
    engine.dispose()
    after = [n["status"] for i in incidents for n in notifications(pipe, i["id"])]
    assert after == ["bundled", "bundled"]
