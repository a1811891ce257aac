"""The notification outbox and the notify worker: claim, send once, record, retry, fence,
and keep channels apart. The channel here is a test double of the Notifier seam; the
real channels have their own tests against local provider stand-ins."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.models import Incident
from incidents.notify import outbox
from incidents.notify.base import Notification, SendResult
from incidents.notify.models import NOTIFICATIONS, THREADS
from incidents.notify.worker import NotifyWorker


class Channel:
    """Answers with programmed results, in order; records what it was handed."""

    def __init__(self, name: str, *results: SendResult, block: threading.Event | None = None):
        self.name = name
        self.results = list(results)
        self.sent: list[Notification] = []
        self.block = block

    def send(self, notification: Notification) -> SendResult:
        if self.block is not None:
            self.block.wait(10)
        self.sent.append(notification)
        if self.results:
            return self.results.pop(0)
        return SendResult(ok=True, provider_id=f"id-{len(self.sent)}")


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def incident(sessions: sessionmaker[Session]) -> int:
    now = utcnow()
    row = Incident(
        severity="P0",
        title="PostgresDown on database-postgres",
        opened_at=now,
        updated_at=now,
        first_alert_at=now,
        last_alert_at=now,
        services=["database-postgres", "user-service"],
        root_causes=[{"service": "database-postgres", "inferred": False, "reason": "root"}],
        blast_radius=["user-service"],
    )
    with sessions.begin() as session:
        session.add(row)
    assert row.id is not None
    return row.id


def queue(
    sessions: sessionmaker[Session],
    incident_id: int,
    channel: str,
    target: str,
    *,
    key: str = "entry:1",
    delay: float = 0,
) -> int:
    now = utcnow()
    with sessions.begin() as session:
        return int(
            session.execute(
                NOTIFICATIONS.insert()
                .values(
                    incident_id=incident_id,
                    event_key=key,
                    event="opened",
                    receiver="critical",
                    channel=channel,
                    target=target,
                    status="pending",
                    attempts=0,
                    not_before=now + timedelta(seconds=delay),
                    created_at=now,
                    updated_at=now,
                    details=[],
                )
                .returning(NOTIFICATIONS.c.id)
            ).scalar_one()
        )


def row(sessions: sessionmaker[Session], notification_id: int) -> sa.Row[tuple[object, ...]]:
    with sessions() as session:
        return session.execute(
            sa.select(NOTIFICATIONS).where(NOTIFICATIONS.c.id == notification_id)
        ).one()


def timeline_kinds(sessions: sessionmaker[Session], incident_id: int) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(sa.text(f"SELECT kind FROM timeline WHERE incident_id = {incident_id}"))
        )


def test_a_due_notification_is_sent_once_and_its_thread_kept(
    sessions: sessionmaker[Session],
) -> None:
    iid = incident(sessions)
    first = queue(sessions, iid, "slack", "#incidents")
    second = queue(sessions, iid, "slack", "#incidents", key="entry:2")
    channel = Channel(
        "slack", SendResult(ok=True, provider_id="1.0001", thread={"channel": "C1", "ts": "1.0001"})
    )
    worker = NotifyWorker(sessions, {"slack": channel}, public_url="http://incidents.test")
    assert worker.run_once("slack") == 2
    # The second waits in the outbox for the channel's next slot (Slack: 1 post/s).
    assert len(channel.sent) == 1 and row(sessions, second).status == "pending"
    time.sleep(1.3)
    assert worker.run_once("slack") == 1
    assert worker.run_once("slack") == 0  # nothing is sent twice
    sent = channel.sent[0]
    assert (sent.incident_id, sent.severity, sent.target) == (iid, "P0", "#incidents")
    assert sent.root_cause == "database-postgres"
    assert sent.url == f"http://incidents.test/api/v1/incidents/{iid}"
    assert channel.sent[1].thread == {"channel": "C1", "ts": "1.0001"}
    done = row(sessions, first)
    assert (done.status, done.provider_id, done.attempts) == ("sent", "1.0001", 1)
    assert done.latency_ms is not None and done.latency_ms >= 0
    assert row(sessions, second).status == "sent"
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(THREADS)) == 1


def test_a_held_notification_waits_for_its_time(sessions: sessionmaker[Session]) -> None:
    iid = incident(sessions)
    held = queue(sessions, iid, "sms", "+15005550006", delay=60)
    channel = Channel("sms")
    assert NotifyWorker(sessions, {"sms": channel}, public_url="").run_once("sms") == 0
    assert row(sessions, held).status == "pending" and channel.sent == []


def test_a_retryable_failure_backs_off_then_fails_visibly(sessions: sessionmaker[Session]) -> None:
    iid = incident(sessions)
    nid = queue(sessions, iid, "sms", "+15005550006")
    busy = SendResult(ok=False, retryable=True, retry_after=30, error="429 Too Many Requests")
    channel = Channel("sms", busy, busy)
    worker = NotifyWorker(sessions, {"sms": channel}, public_url="", max_attempts=2)
    before = utcnow()
    worker.run_once("sms")
    waiting = row(sessions, nid)
    assert (waiting.status, waiting.attempts, waiting.error) == ("pending", 1, busy.error)
    assert waiting.not_before >= before + timedelta(seconds=30)  # Retry-After honoured
    with sessions.begin() as session:  # the backoff has passed
        session.execute(
            NOTIFICATIONS.update().where(NOTIFICATIONS.c.id == nid).values(not_before=utcnow())
        )
    worker.run_once("sms")
    assert row(sessions, nid).status == "failed"
    assert timeline_kinds(sessions, iid) == ["notification_failed"]


def test_an_unreachable_target_fails_at_once_and_says_so(sessions: sessionmaker[Session]) -> None:
    iid = incident(sessions)
    nid = queue(sessions, iid, "sms", "+15005550009")
    stop = SendResult(ok=False, target_unreachable=True, error="21610: the recipient sent STOP")
    NotifyWorker(sessions, {"sms": Channel("sms", stop)}, public_url="").run_once("sms")
    assert row(sessions, nid).status == "failed"
    with sessions() as session:
        message = session.scalar(sa.text(f"SELECT message FROM timeline WHERE incident_id={iid}"))
    assert "+15005550009 cannot be reached" in str(message) and "21610" in str(message)


def test_a_worker_whose_lease_lapsed_cannot_record(sessions: sessionmaker[Session]) -> None:
    iid = incident(sessions)
    nid = queue(sessions, iid, "email", "oncall@example.com")
    [stale] = outbox.claim(sessions, "email", lease=timedelta(seconds=-1))
    [fresh] = outbox.claim(sessions, "email")  # the lapsed lease is handed on
    assert fresh.id == stale.id == nid and fresh.token != stale.token
    assert outbox.record(sessions, stale, SendResult(ok=True), max_attempts=3) == "lost"
    assert outbox.record(sessions, fresh, SendResult(ok=True), max_attempts=3) == "sent"
    assert row(sessions, nid).attempts == 2


def test_a_stuck_channel_does_not_delay_another(sessions: sessionmaker[Session]) -> None:
    iid = incident(sessions)
    queue(sessions, iid, "slack", "#incidents")
    sms = queue(sessions, iid, "sms", "+15005550006")
    release = threading.Event()
    slack, text = Channel("slack", block=release), Channel("sms")
    worker = NotifyWorker(sessions, {"slack": slack, "sms": text}, public_url="", poll_seconds=0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while row(sessions, sms).status != "sent" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert row(sessions, sms).status == "sent"
        assert slack.sent == []  # still stuck in its send
    finally:
        release.set()
        worker.stop()
    assert len(slack.sent) == 1


def test_the_api_lists_an_incidents_notifications(
    sessions: sessionmaker[Session], client: object
) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import AUTH

    assert isinstance(client, TestClient)
    iid = incident(sessions)
    nid = queue(sessions, iid, "sms", "+15005550006")
    stop = SendResult(ok=False, target_unreachable=True, error="21610: the recipient sent STOP")
    NotifyWorker(sessions, {"sms": Channel("sms", stop)}, public_url="").run_once("sms")
    response = client.get(f"/api/v1/incidents/{iid}/notifications", headers=AUTH)
    assert response.status_code == 200, response.text
    [only] = response.json()
    assert (only["id"], only["channel"], only["status"], only["attempts"]) == (
        nid,
        "sms",
        "failed",
        1,
    )
    assert "21610" in only["error"]
    missing = client.get("/api/v1/incidents/999999/notifications", headers=AUTH)
    assert missing.status_code == 404
