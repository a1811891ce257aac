"""Once only, when the worker never learned how a send went: a worker killed between the
provider's acceptance and the record, or a request that timed out after the provider took
it. The next attempt asks the provider first (Slack by message metadata, Twilio by
listing messages and calls) and sends only if the provider has nothing.

The real slack-sdk and twilio clients talk HTTP to local stand-ins for the providers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from incidents.notify import outbox
from incidents.notify.base import Notifier
from incidents.notify.channels.slack import SlackNotifier, SlackSettings
from incidents.notify.channels.sms import SmsNotifier
from incidents.notify.channels.voice import VoiceNotifier
from incidents.notify.models import NOTIFICATIONS, THREADS
from incidents.notify.worker import NotifyWorker
from tests.notify.fake_slack import FakeSlack
from tests.notify.fake_twilio import FakeTwilio
from tests.notify.smtp_server import SmtpServer
from tests.notify.test_email import channel as email_channel
from tests.notify.test_email import notification as email_note
from tests.notify.test_email import server as smtp
from tests.notify.test_outbox import incident, queue, row, sessions
from tests.notify.test_slack import notification as note

__all__ = ["sessions", "smtp"]

PHONE = "+15551230001"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def slack_channel(fake: FakeSlack, timeout: float = 5) -> SlackNotifier:
    return SlackNotifier(
        SlackSettings(bot_token=fake.token, api_url=fake.api_url, timeout_seconds=timeout)
    )


def worker(sessions: sessionmaker[Session], channel: Notifier) -> NotifyWorker:
    return NotifyWorker(sessions, {channel.name: channel}, public_url="http://incidents.test")


def killed_mid_send(sessions: sessionmaker[Session], channel: Notifier, nid: int) -> None:
    """What a worker killed after the provider took the request leaves: the request
    made, its start committed, no outcome recorded, and a lease that lapses."""
    [item] = outbox.claim(sessions, channel.name, lease=timedelta(seconds=-1))
    assert item.id == nid
    notification = outbox.render(sessions, item, "http://incidents.test")
    assert isinstance(channel, SlackNotifier | SmsNotifier | VoiceNotifier)
    assert outbox.mark_started(sessions, item, channel.attempt_key(notification))
    assert channel.send(notification).ok


def due_now(sessions: sessionmaker[Session], nid: int) -> None:
    """Skip the backoff after a failed attempt."""
    with sessions.begin() as session:
        session.execute(
            sa.update(NOTIFICATIONS)
            .where(NOTIFICATIONS.c.id == nid)
            .values(not_before=NOTIFICATIONS.c.created_at)
        )


def test_a_slack_post_made_by_a_killed_worker_is_found_not_repeated(
    sessions: sessionmaker[Session], slack: FakeSlack
) -> None:
    iid = incident(sessions)
    nid = queue(sessions, iid, "slack", "#incidents-critical")
    channel = slack_channel(slack)
    killed_mid_send(sessions, channel, nid)
    assert len(slack.top_level()) == 1

    assert worker(sessions, channel).run_once("slack") == 1

    assert len(slack.calls("chat.postMessage")) == 1  # not posted again
    [message] = slack.top_level()
    stored = row(sessions, nid)
    assert (stored.status, stored.provider_id, stored.send_started_at) == (
        "sent",
        message.ts,
        None,
    )
    # The thread is kept, so later events edit the message the killed worker posted.
    with sessions() as session:
        thread = session.scalar(sa.select(THREADS.c.thread).where(THREADS.c.incident_id == iid))
    assert thread == {"channel": slack.channel_id("incidents-critical"), "ts": message.ts}
    lookups = slack.calls("conversations.history")
    assert lookups and lookups[0].body["channel"] == slack.channel_id("incidents-critical")


def test_a_slack_reply_made_by_a_killed_worker_is_found_not_repeated(
    sessions: sessionmaker[Session], slack: FakeSlack
) -> None:
    iid = incident(sessions)
    opened = queue(sessions, iid, "slack", "#incidents")
    channel = slack_channel(slack)
    assert worker(sessions, channel).run_once("slack") == 1
    assert row(sessions, opened).status == "sent"
    raised = queue(sessions, iid, "slack", "#incidents", key="entry:2")
    with sessions.begin() as session:
        session.execute(
            sa.update(NOTIFICATIONS)
            .where(NOTIFICATIONS.c.id == raised)
            .values(event="severity_raised")
        )
    killed_mid_send(sessions, channel, raised)
    [top] = slack.top_level()
    assert len(slack.replies("incidents", top.ts)) == 1

    assert worker(sessions, channel).run_once("slack") == 1

    assert len(slack.replies("incidents", top.ts)) == 1
    assert row(sessions, raised).status == "sent"
    assert slack.calls("conversations.replies")


def test_a_slack_post_that_never_left_is_sent_after_the_lookup(
    sessions: sessionmaker[Session], slack: FakeSlack
) -> None:
    iid = incident(sessions)
    nid = queue(sessions, iid, "slack", "#incidents")
    [item] = outbox.claim(sessions, "slack", lease=timedelta(seconds=-1))
    assert outbox.mark_started(sessions, item, None)  # killed before the request

    assert worker(sessions, slack_channel(slack)).run_once("slack") == 1

    assert len(slack.calls("conversations.history")) == 1
    assert len(slack.top_level()) == 1
    assert row(sessions, nid).status == "sent"


def test_a_timeout_is_retryable_and_in_doubt(slack: FakeSlack) -> None:
    slack.fail_next(delay=1.0)
    result = slack_channel(slack, timeout=0.2).send(note())
    assert not result.ok and result.retryable and result.in_doubt
    assert "network error" in (result.error or "")


def test_a_slack_timeout_after_slack_posted_is_not_posted_twice(
    sessions: sessionmaker[Session], slack: FakeSlack
) -> None:
    iid = incident(sessions)
    nid = queue(sessions, iid, "slack", "#incidents")
    slack.answer_late(1.5)
    impatient = slack_channel(slack, timeout=0.3)
    assert worker(sessions, impatient).run_once("slack") == 1
    first = row(sessions, nid)
    assert first.status == "pending" and first.send_started_at is not None
    assert "network error" in str(first.error)
    slack.answer_late(0)
    due_now(sessions, nid)

    assert worker(sessions, impatient).run_once("slack") == 1

    assert len(slack.calls("chat.postMessage")) == 1
    assert len(slack.top_level()) == 1
    done = row(sessions, nid)
    assert done.status == "sent" and done.provider_id == slack.top_level()[0].ts


def test_when_slack_cannot_be_asked_nothing_is_posted_yet(
    sessions: sessionmaker[Session], slack: FakeSlack
) -> None:
    iid = incident(sessions)
    nid = queue(sessions, iid, "slack", "#incidents")
    [item] = outbox.claim(sessions, "slack", lease=timedelta(seconds=-1))
    assert outbox.mark_started(sessions, item, None)
    slack.fail_next(status=503)  # conversations.list answers 503

    assert worker(sessions, slack_channel(slack)).run_once("slack") == 1

    assert slack.calls("chat.postMessage") == []
    waiting = row(sessions, nid)
    assert waiting.status == "pending" and waiting.send_started_at is not None
    due_now(sessions, nid)
    assert worker(sessions, slack_channel(slack)).run_once("slack") == 1
    assert len(slack.top_level()) == 1 and row(sessions, nid).status == "sent"


@pytest.mark.parametrize("kind", ["sms", "voice"])
def test_a_twilio_send_made_by_a_killed_worker_is_found_not_repeated(
    sessions: sessionmaker[Session], twilio: FakeTwilio, kind: str
) -> None:
    iid = incident(sessions)
    nid = queue(sessions, iid, kind, PHONE)
    settings = twilio.settings(public_url="http://incidents.test")
    channel: SmsNotifier | VoiceNotifier = (
        SmsNotifier(settings) if kind == "sms" else VoiceNotifier(settings)
    )
    killed_mid_send(sessions, channel, nid)
    made = twilio.messages() if kind == "sms" else twilio.calls()
    assert len(made) == 1

    assert worker(sessions, channel).run_once(kind) == 1

    again = twilio.messages() if kind == "sms" else twilio.calls()
    assert len(again) == 1
    stored = row(sessions, nid)
    assert stored.status == "sent" and str(stored.provider_id).startswith(
        "SM" if kind == "sms" else "CA"
    )
    [lookup] = [r for r in twilio.requests if r.method == "GET"]
    assert lookup.form["To"] == PHONE and lookup.form["From"] == settings.from_number


def test_another_text_to_the_same_number_is_not_taken_for_the_lost_one(
    sessions: sessionmaker[Session], twilio: FakeTwilio
) -> None:
    iid = incident(sessions)
    channel = SmsNotifier(twilio.settings())
    other = queue(sessions, iid, "sms", PHONE, key="entry:0")
    with sessions.begin() as session:
        session.execute(
            sa.update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == other).values(event="resolved")
        )
    assert worker(sessions, channel).run_once("sms") == 1  # a different text, sent
    nid = queue(sessions, iid, "sms", PHONE)
    [item] = outbox.claim(sessions, "sms", lease=timedelta(seconds=-1))
    notification = outbox.render(sessions, item, "http://incidents.test")
    assert outbox.mark_started(sessions, item, channel.attempt_key(notification))

    assert worker(sessions, channel).run_once("sms") == 1

    bodies = [m["Body"] for m in twilio.messages()]
    assert len(bodies) == 2 and bodies[0].startswith("RESOLVED") and "ack" in bodies[1]
    assert row(sessions, nid).status == "sent"


def test_a_resend_of_one_email_keeps_its_message_id(smtp: SmtpServer) -> None:
    # SMTP cannot say whether an attempt whose answer was lost went through: a resend is
    # the same message to the recipient's mail system, and different notifications differ.
    mailer = email_channel(smtp)
    first = mailer.compose(email_note(delivery_id=41))
    again = mailer.compose(email_note(delivery_id=41))
    other = mailer.compose(email_note(delivery_id=42))
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert str(first["Message-ID"]).startswith("<incident-")
