"""A receiver's own templates, from the routing section to what the providers receive:
webhook in, the routing stage and the embedded notify worker, then the real slack-sdk,
twilio and aiosmtplib clients against the local stand-ins. Another receiver of the same
incident keeps the built-in wording. On SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.config import Settings
from incidents.notify.base import Notification
from incidents.notify.setup import ByReceiver, build_channels
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.notify.fake_slack import FakeSlack
from tests.notify.fake_twilio import FROM_NUMBER, FakeTwilio
from tests.notify.smtp_server import SmtpServer

TEMPLATES: dict[str, Any] = {
    "slack": {"title": "DB team: {{ title }}", "reply": "db says: {{ summary }}"},
    "email": {"subject": "[db-oncall] {{ severity }} #{{ incident_id }}: {{ title }}"},
    "sms": {"text": "DB {{ severity }} #{{ incident_id }} {{ title }}. ack={{ ack_code }}"},
}
ROUTING: dict[str, Any] = {
    "receivers": [
        {"name": "default", "console": ["stdout"]},
        {
            "name": "db",
            "slack": ["#incidents-critical"],
            "email": ["db@example.com"],
            "sms": ["+15005550010"],
            "templates": TEMPLATES,
        },
        {
            "name": "everyone",
            "slack": ["#incidents"],
            "email": ["all@example.com"],
            "sms": ["+15005550011"],
        },
    ],
    "route": {
        "receiver": "default",
        "routes": [
            {"matchers": ['severity="P0"'], "receiver": "db", "continue": True},
            {"matchers": ['severity="P0"'], "receiver": "everyone"},
        ],
    },
}


@pytest.fixture
def providers() -> Iterator[tuple[FakeSlack, FakeTwilio, SmtpServer]]:
    with FakeSlack() as slack, FakeTwilio() as twilio, SmtpServer() as smtp:
        yield slack, twilio, smtp


def provider_settings(slack: FakeSlack, twilio: FakeTwilio, smtp: SmtpServer) -> dict[str, Any]:
    return {
        "slack_bot_token": slack.token,
        "slack_api_url": slack.api_url,
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "twilio_from_number": FROM_NUMBER,
        "twilio_api_url": twilio.url,
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_tls": "none",
        "smtp_from": "incidents@example.com",
    }


def wait_until(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_receivers_templates_word_its_slack_email_and_sms_and_no_one_elses(
    db_url: str,
    client_for: Callable[..., TestClient],
    providers: tuple[FakeSlack, FakeTwilio, SmtpServer],
) -> None:
    slack, twilio, smtp = providers
    client = client_for(
        db_url,
        routing=ROUTING,
        correlation={"open_hold_seconds": 0},
        **provider_settings(slack, twilio, smtp),
    )
    pipe = Pipeline(client, db_url)
    pipe.post(alert("database-postgres", "PostgresDown", recent(5), "P0"))
    [incident] = pipe.live()
    number = incident["id"]
    wait_until("two posts", lambda: len(slack.calls("chat.postMessage")) == 2)
    wait_until("two mails", lambda: len(smtp.messages) == 2)
    wait_until("two texts", lambda: len(twilio.messages()) == 2)

    posts = {c.body["channel"]: c.body for c in slack.calls("chat.postMessage")}
    own, plain = posts["#incidents-critical"], posts["#incidents"]
    assert own["text"].startswith("[P0] DB team: PostgresDown")
    assert "DB team: PostgresDown" in str(own["blocks"])
    assert plain["text"].startswith("[P0] PostgresDown") and "DB team" not in str(plain)

    subjects = {m.message["To"]: m.message["Subject"] for m in smtp.messages}
    wanted = f"[db-oncall] P0 #{number}: PostgresDown on database-postgres"
    assert subjects["db@example.com"] == wanted
    assert subjects["all@example.com"].startswith(f"[P0] #{number} PostgresDown")

    texts = {m["To"]: m["Body"] for m in twilio.messages()}
    assert texts["+15005550010"].startswith(f"DB P0 #{number} PostgresDown")
    assert "ack=" in texts["+15005550010"]
    assert texts["+15005550011"].startswith(f"[P0] #{number} PostgresDown")
    assert "Reply '" in texts["+15005550011"]


def test_receivers_with_templates_get_their_own_channel_instances(
    providers: tuple[FakeSlack, FakeTwilio, SmtpServer],
) -> None:
    slack, twilio, smtp = providers
    settings = Settings(  # type: ignore[call-arg]
        database_url="sqlite://",
        config="",
        broker_url="",
        routing=ROUTING,
        **provider_settings(slack, twilio, smtp),
    )
    channels = build_channels(settings)
    for name in ("slack", "email", "sms"):
        channel = channels[name]
        assert isinstance(channel, ByReceiver) and set(channel.own) == {"db"}
    assert not isinstance(channels["voice"], ByReceiver)  # no receiver rewords calls
    note = Notification(
        delivery_id=0,
        incident_id=4,
        event="resolved",
        severity="P1",
        status="resolved",
        title="Lag",
        services=("api",),
        root_cause=None,
        root_reason=None,
        blast_radius=(),
        url="",
        target="+15005550010",
        receiver="db",
    )
    # The receiver rewords only its page; the resolved text keeps the built-in one.
    assert channels["sms"].send(note).ok
    assert twilio.messages()[-1]["Body"] == "RESOLVED #4 Lag on api"
