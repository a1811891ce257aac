"""Email per recipient, the daily digest through its beat task, SMTP settings from the
environment, and what the API and /metrics show of waiting and sent notifications.
Real SMTP (aiosmtpd), the real app and pipeline; on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.config import Settings, get_settings
from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.notify.base import build
from incidents.notify.digest import due_since
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.setup import build_channels
from incidents.notify.worker import NotifyWorker
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.notify.smtp_server import SmtpServer
from tests.notify.test_email import notification
from tests.notify.test_outbox import incident
from tests.notify.test_routing_stage import notifications, wait_until

ALICE, BOB = "alice@example.com", "bob@example.com"


# The server takes AUTH in the clear on purpose (no TLS in this test); aiosmtpd warns.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtp_login_and_sender_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SmtpServer(username="relay", password="s3cret") as server:
        monkeypatch.delenv("INCIDENTS_CONFIG", raising=False)
        for name, value in {
            "HOST": server.host,
            "PORT": str(server.port),
            "TLS": "none",
            "USERNAME": "relay",
            "PASSWORD": "s3cret",
            "FROM": "Pager <pager@alerts.example.org>",
        }.items():
            monkeypatch.setenv(f"INCIDENTS_SMTP_{name}", value)
        email = build_channels(Settings())["email"]
        result = email.send(notification(target=ALICE))
        assert result.ok, result.error
        [mail] = server.messages
        assert mail.login == "relay" and server.auth_attempts >= 1
        assert mail.sender == "pager@alerts.example.org"
        assert mail.message["From"] == "Pager <pager@alerts.example.org>"
        assert mail.recipients == [ALICE]


def test_each_recipient_has_a_thread_of_its_own(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    routing = {
        "receivers": [{"name": "mail", "email": [ALICE, BOB]}],
        "route": {"receiver": "mail"},
    }
    with SmtpServer() as smtp:
        client = client_for(
            db_url,
            routing=routing,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_tls="none",
            correlation={"open_hold_seconds": 0},
        )
        pipe = Pipeline(client, db_url)
        t0 = recent(5)
        pipe.post(alert("billing", "InvoicesStuck", t0, "P1"))
        wait_until("the first mails", lambda: len(smtp.messages) == 2)
        ended = t0 + timedelta(minutes=1)
        pipe.post(alert("billing", "InvoicesStuck", t0, "P1", resolved_at=ended))
        wait_until("the second mails", lambda: len(smtp.messages) == 4)
        to: dict[str, list[Any]] = {ALICE: [], BOB: []}
        for mail in smtp.messages:
            [recipient] = mail.recipients
            to[recipient].append(mail.message)
        roots = set()
        for recipient, (first, second) in to.items():
            assert first["To"] == recipient and second["To"] == recipient
            assert not first["In-Reply-To"]
            assert second["Subject"].startswith("RESOLVED")
            assert second["In-Reply-To"] == first["Message-ID"]
            assert first["Message-ID"] in second["References"]
            roots.add(first["Message-ID"])
        assert len(roots) == 2  # two threads, not one shared by both


def metric(text: str, name: str, channel: str) -> float:
    match = re.search(rf'^{name}{{channel="{channel}"}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} for {channel} is not in /metrics"
    return float(match[1])


def test_lag_rises_while_a_notification_waits_and_latency_is_listed(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(db_url, notify={"enabled": False})
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    try:
        iid = incident(sessions)
        due = utcnow() - timedelta(seconds=30)
        with sessions.begin() as session:
            session.execute(
                NOTIFICATIONS.insert().values(
                    incident_id=iid,
                    event_key="entry:1",
                    event="opened",
                    receiver="default",
                    channel="console",
                    target="stdout",
                    status="pending",
                    attempts=0,
                    not_before=due,
                    created_at=due,
                    updated_at=due,
                    details=[],
                )
            )
        lag = metric(client.get("/metrics").text, "incidents_notify_lag_seconds", "console")
        assert 30 <= lag < 300
        worker = NotifyWorker(sessions, {"console": build("console", {})}, public_url="")
        assert worker.run_once("console") == 1
        after = metric(client.get("/metrics").text, "incidents_notify_lag_seconds", "console")
        assert after == 0.0
        [sent] = notifications(Pipeline(client, db_url), iid)
        assert sent["status"] == "sent" and sent["attempts"] == 1
        # From due to accepted: the 30 s it waited, and not much more.
        assert 30_000 <= sent["latency_ms"] < 300_000
    finally:
        engine.dispose()


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set the notify worker process's environment, as `notify-worker` reads it."""
    from workers import app as worker_app
    from workers import notify as worker_tasks

    def clear() -> None:
        for cached in (
            get_settings,
            worker_app.session_factory,
            worker_tasks.notifier,
            worker_tasks._redis,
        ):
            cached.cache_clear()

    def configure(**env: str) -> None:
        monkeypatch.delenv("INCIDENTS_CONFIG", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(f"INCIDENTS_{name}", value)
        clear()

    yield configure
    if worker_app.session_factory.cache_info().currsize:
        worker_app.session_factory().kw["bind"].dispose()
    monkeypatch.undo()
    clear()


def test_the_beat_task_sends_each_digest_recipient_one_email_a_day(
    db_url: str, client_for: Callable[..., TestClient], worker_env: Callable[..., None]
) -> None:
    routing = {
        "receivers": [{"name": "daily", "email": [ALICE, BOB], "digest": "daily"}],
        "route": {"receiver": "daily"},
    }
    pipe = Pipeline(client_for(db_url, routing=routing, notify={"enabled": False}), db_url)
    t0 = recent(5)
    pipe.post(alert("billing", "InvoicesSlow", t0, "P3"), alert("ledger", "LedgerLag", t0, "P3"))
    hour = utcnow().hour
    engine = create_db_engine(db_url)
    with engine.begin() as conn:  # routed before today's digest hour
        before = due_since(utcnow(), hour) - timedelta(minutes=1)
        conn.execute(sa.text("UPDATE notifications SET created_at = :t"), {"t": before})
    engine.dispose()
    with SmtpServer() as smtp:
        worker_env(
            DATABASE_URL=db_url,
            BROKER_URL="redis://127.0.0.1:6379/0",
            SMTP_HOST=smtp.host,
            SMTP_PORT=str(smtp.port),
            SMTP_TLS="none",
            NOTIFY__DIGEST_HOUR=str(hour),
            NOTIFY__PUBLIC_URL="http://incidents.test",
        )
        from workers.app import celery_app

        # What beat sends: the schedule entry's task, by name, with no arguments.
        entry = celery_app.conf.beat_schedule["daily-digests"]
        task = celery_app.tasks[entry["task"]]
        assert task.apply().get() == 2
        mails = {m.recipients[0]: m.message for m in smtp.messages}
        assert sorted(mails) == [ALICE, BOB] and len(smtp.messages) == 2
        for mail in mails.values():
            assert "2 incident(s)" in mail["Subject"]
            body = mail.get_body(preferencelist=("plain",))
            assert body is not None
            text = body.get_content()
            assert "InvoicesSlow on billing" in text and "LedgerLag on ledger" in text
        # Later the same day: another P3 waits for tomorrow, and nobody is mailed twice.
        pipe.post(alert("search", "IndexBehind", recent(1), "P3"))
        for _ in range(3):
            assert task.apply().get() == 0
        assert len(smtp.messages) == 2
    statuses = sorted(n["status"] for i in pipe.incidents() for n in notifications(pipe, i["id"]))
    assert statuses == ["bundled"] * 4 + ["digest"] * 2
