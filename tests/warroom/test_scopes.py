"""At start-up the war room checks the Slack token's scopes and says what is missing."""

from __future__ import annotations

import logging

import pytest

from incidents.notify.setup import make_notify_worker
from incidents.warroom.scopes import NEEDED
from tests.conftest import make_settings
from tests.warroom.fake_slack_rooms import FakeSlackRooms


def _start(sqlite_url: str, slack: FakeSlackRooms, **overrides: object) -> None:
    from incidents.db import create_db_engine, make_session_factory

    engine = create_db_engine(sqlite_url)
    settings = make_settings(
        sqlite_url,
        slack_bot_token=slack.token,
        slack_api_url=slack.api_url,
        notify={"enabled": False},
        **{"warroom": {"enabled": True}, **overrides},
    )
    make_notify_worker(make_session_factory(engine), settings)
    engine.dispose()


def test_missing_scopes_are_logged_at_start_up(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    slack = FakeSlackRooms(scopes="chat:write,channels:read")
    with slack, caplog.at_level(logging.ERROR):
        _start(sqlite_url, slack)
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    said = error.getMessage()
    for scope in ("channels:manage", "channels:history", "pins:write"):
        assert scope in said
    assert "chat:write" not in said and "warroom.enabled" in said


def test_all_scopes_granted_log_nothing(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with FakeSlackRooms(scopes=",".join(NEEDED)) as slack, caplog.at_level(logging.ERROR):
        _start(sqlite_url, slack)
    assert [r for r in caplog.records if r.levelno == logging.ERROR] == []
    assert len(slack.calls("auth.test")) == 1


def test_switched_off_nothing_is_asked(sqlite_url: str) -> None:
    with FakeSlackRooms(scopes="") as slack:
        _start(sqlite_url, slack, warroom={"enabled": False})
    assert slack.calls("auth.test") == []


def test_slack_unreachable_never_stops_start_up(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeSlackRooms() as slack:
        url = slack.api_url
    settings = make_settings(
        sqlite_url,
        slack_bot_token="xoxb-x",
        slack_api_url=url,
        notify={"enabled": False},
        warroom={"enabled": True},
    )
    from incidents.db import create_db_engine, make_session_factory

    engine = create_db_engine(sqlite_url)
    with caplog.at_level(logging.WARNING):
        make_notify_worker(make_session_factory(engine), settings)
    engine.dispose()
    assert any("could not check" in r.getMessage() for r in caplog.records)
