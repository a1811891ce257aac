"""A route's timings do what the README says: group_wait holds an opening page instead of
the opening hold, group_interval spaces a Slack message's updates, and repeat_interval
reminds a receiver of an incident nobody acknowledged, once per interval, until someone
does. Through the pipeline and the embedded notify worker to the local Slack stand-in
(real slack-sdk); the reminder sweep is run with its clock given. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from incidents.db import utcnow
from incidents.notify.reminders import remind, run_reminders
from incidents.notify.routing import RoutingTree
from incidents.notify.routing_config import RoutingSettings
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH
from tests.notify.fake_slack import FakeSlack
from tests.notify.test_routing_stage import start


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def rows(pipe: Pipeline, incident_id: int, event: str) -> list[Any]:
    with pipe.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT event_key, status, not_before, created_at, target FROM notifications "
                    "WHERE incident_id = :i AND event = :e ORDER BY id"
                ),
                {"i": incident_id, "e": event},
            )
        )


def aware(value: Any) -> datetime:
    """A timestamp read back raw (SQLite gives text or naive values) as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


TWO_CHANNELS: dict[str, Any] = {
    "receivers": [
        {"name": "default", "console": ["stdout"]},
        {"name": "critical", "slack": ["#incidents-critical"]},
        {"name": "chat", "slack": ["#incidents"]},
    ],
    "route": {
        "receiver": "default",
        "routes": [
            {"matchers": ['severity="P0"'], "receiver": "critical", "group_wait": "0s"},
            {"matchers": ['severity="P2"'], "receiver": "chat", "group_wait": "10m"},
        ],
    },
}


def test_a_routes_group_wait_replaces_the_opening_hold(
    db_url: str, client_for: Callable[..., TestClient], slack: FakeSlack
) -> None:
    # The opening hold is 5 minutes; the P0 route says 0s, the P2 route 10 minutes.
    pipe = start(db_url, client_for, slack, 300, TWO_CHANNELS)
    t0 = recent(5)
    pipe.post(alert("billing", "InvoicesStuck", t0, "P0"), alert("search", "SlowQueries", t0, "P2"))
    by_severity = {i["severity"]: i["id"] for i in pipe.live()}
    wait_until("the P0 page", lambda: len(slack.calls("chat.postMessage")) == 1)
    [post] = slack.calls("chat.postMessage")
    assert post.body["channel"] == "#incidents-critical"
    [held] = rows(pipe, by_severity["P2"], "opened")
    assert held.status == "pending"
    assert aware(held.not_before) - aware(held.created_at) == timedelta(minutes=10)
    time.sleep(0.5)
    assert len(slack.calls("chat.postMessage")) == 1  # the P2 still waits


def test_without_group_wait_the_opening_hold_applies(
    db_url: str, client_for: Callable[..., TestClient], slack: FakeSlack
) -> None:
    routing = {**TWO_CHANNELS, "route": {"receiver": "chat"}}
    pipe = start(db_url, client_for, slack, 300, routing)
    pipe.post(alert("search", "SlowQueries", recent(5), "P2"))
    [incident] = pipe.live()
    [held] = rows(pipe, incident["id"], "opened")
    assert aware(held.not_before) - aware(held.created_at) == timedelta(minutes=5)


def test_group_interval_spaces_the_updates_of_a_message(
    db_url: str, client_for: Callable[..., TestClient], slack: FakeSlack
) -> None:
    routing = {
        **TWO_CHANNELS,
        "route": {"receiver": "critical", "group_interval": "1h"},
    }
    pipe = start(db_url, client_for, slack, 0, routing)
    pipe.load_graph()
    t0 = recent(5)
    pipe.post(alert("database-postgres", "PostgresDown", t0, "P0"))
    [incident] = pipe.live()
    wait_until("the page", lambda: len(slack.calls("chat.postMessage")) == 1)
    wait_until("the thread", lambda: rows(pipe, incident["id"], "opened")[0].status == "sent")
    # The first update has none before it: it goes at once.
    pipe.post(alert("user-service", "LoginErrors", t0 + timedelta(seconds=10), "P1"))
    wait_until("the first update", lambda: len(slack.calls("chat.update")) == 1)
    wait_until("it is recorded", lambda: rows(pipe, incident["id"], "updated")[0].status == "sent")
    # The next one waits an hour after it.
    pipe.post(alert("user-service", "LoginLatency", t0 + timedelta(seconds=20), "P1"))
    first, second = rows(pipe, incident["id"], "updated")
    assert second.status == "pending"
    assert aware(second.not_before) - aware(first.not_before) == timedelta(hours=1)
    time.sleep(2)  # past Slack's edit budget: only the spacing holds it back
    assert len(slack.calls("chat.update")) == 1


REMINDING: dict[str, Any] = {
    "receivers": [
        {"name": "default", "console": ["stdout"]},
        {"name": "chat", "slack": ["#incidents"]},
    ],
    "route": {"receiver": "chat", "repeat_interval": "1h"},
}


def test_repeat_interval_reminds_once_per_interval_until_acknowledged(
    db_url: str, client_for: Callable[..., TestClient], slack: FakeSlack
) -> None:
    pipe = start(db_url, client_for, slack, 0, REMINDING)
    pipe.post(alert("search", "SlowQueries", recent(5), "P2"))
    [incident] = pipe.live()
    iid = incident["id"]
    wait_until("the page", lambda: len(slack.calls("chat.postMessage")) == 1)
    wait_until("the thread", lambda: rows(pipe, iid, "opened")[0].status == "sent")
    factory = sessionmaker(pipe.engine)
    tree = RoutingTree.from_settings(RoutingSettings.model_validate(REMINDING))
    with factory() as session:
        paged_at = aware(
            session.execute(
                sa.text("SELECT paged_at FROM incidents WHERE id = :i"), {"i": iid}
            ).scalar_one()
        )
        # Within the first interval: nothing yet.
        assert remind(session, tree, paged_at + timedelta(minutes=59)) == []

    # An hour and a minute after the page (the page moved back rather than the clock
    # forward, so that the worker, on the real clock, finds the reminder due).
    with pipe.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE incidents SET paged_at = :t WHERE id = :i"),
            {"t": utcnow() - timedelta(minutes=61), "i": iid},
        )
    run_reminders(factory, tree)
    run_reminders(factory, tree)  # a second sweep in the same interval adds nothing
    [reminder] = rows(pipe, iid, "reminder")
    assert reminder.event_key.endswith(":1") and reminder.target == "#incidents"
    wait_until("the reminder", lambda: len(slack.calls("chat.postMessage")) == 2)
    reply = slack.calls("chat.postMessage")[1]
    assert reply.body["thread_ts"] and reply.body["reply_broadcast"] in (True, "true", "1")
    assert "Reminder: still open and not acknowledged" in reply.body["text"]
    assert "paged 61 min ago" in reply.body["text"]
    wait_until("it is recorded", lambda: rows(pipe, iid, "reminder")[0].status == "sent")

    # The next interval (the sweep's clock an hour on): one more, pending till then.
    later = utcnow() + timedelta(hours=1)
    run_reminders(factory, tree, now=later)
    run_reminders(factory, tree, now=later + timedelta(minutes=30))
    first, second = rows(pipe, iid, "reminder")
    assert first.status == "sent"
    assert second.event_key.endswith(":2") and second.status == "pending"

    # Acknowledged: the waiting one is cancelled and no more are made.
    response = pipe.client.post(f"/api/v1/incidents/{iid}/acknowledge", headers=AUTH)
    assert response.status_code == 200, response.text
    run_reminders(factory, tree, now=later + timedelta(hours=5))
    assert [r.status for r in rows(pipe, iid, "reminder")] == ["sent", "cancelled"]


def test_receivers_with_an_escalation_policy_or_a_digest_get_no_reminders(
    db_url: str, client_for: Callable[..., TestClient], slack: FakeSlack
) -> None:
    pipe = start(db_url, client_for, slack, 0, REMINDING)
    pipe.post(alert("search", "SlowQueries", recent(5), "P2"))
    [incident] = pipe.live()
    # The same incident, seen by trees whose receiver escalates, or is a digest.
    escalating = {
        "receivers": [{"name": "chat", "slack": ["#incidents"], "escalation_policy": "p2"}],
        "route": {"receiver": "chat", "repeat_interval": "1h"},
    }
    # (A digest route setting repeat_interval itself is refused; this one inherits it.)
    digest = {
        "receivers": [
            {"name": "x", "console": ["stdout"]},
            {"name": "chat", "email": ["a@example.com"], "digest": "daily"},
        ],
        "route": {
            "receiver": "x",
            "repeat_interval": "1h",
            "routes": [{"matchers": ['severity="P2"'], "receiver": "chat"}],
        },
    }
    later = utcnow() + timedelta(hours=3)
    with sessionmaker(pipe.engine)() as session:
        for routing in (escalating, digest):
            tree = RoutingTree.from_settings(RoutingSettings.model_validate(routing))
            assert remind(session, tree, later) == []
        plain = RoutingTree.from_settings(RoutingSettings.model_validate(REMINDING))
        [row] = remind(session, plain, later)
        assert (row["incident_id"], row["event"]) == (incident["id"], "reminder")
