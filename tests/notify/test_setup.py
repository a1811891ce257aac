"""Channels built from the settings: configured ones are real, others stand in on the
console and say which channel and target they stand in for."""

from __future__ import annotations

import pytest

from incidents.config import Settings
from incidents.notify.base import Notification
from incidents.notify.channels.slack import SlackNotifier
from incidents.notify.setup import StandIn, build_channels


def settings(**values: object) -> Settings:
    return Settings(database_url="sqlite://", config="", broker_url="", **values)  # type: ignore[arg-type]


NOTE = Notification(
    delivery_id=7,
    incident_id=3,
    event="opened",
    severity="P0",
    status="open",
    title="PostgresDown on database-postgres",
    services=("database-postgres",),
    root_cause="database-postgres",
    root_reason="root",
    blast_radius=(),
    url="http://incidents.test/api/v1/incidents/3",
    target="#incidents-critical",
)


def test_unconfigured_channels_stand_in_on_the_console(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    channels = build_channels(settings())
    assert isinstance(channels["slack"], StandIn)
    assert "slack is not configured" in caplog.text
    assert channels["slack"].send(NOTE).ok
    out = capsys.readouterr().out
    assert "=== PAGE P0 #3 opened: PostgresDown on database-postgres ===" in out
    assert "for slack #incidents-critical (slack is not configured)" in out


def test_a_configured_channel_is_the_real_one() -> None:
    channels = build_channels(settings(slack_bot_token="xoxb-1"))
    assert isinstance(channels["slack"], SlackNotifier)
    assert isinstance(channels["sms"], StandIn)  # no Twilio credentials
