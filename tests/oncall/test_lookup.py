"""The Python API for the escalation engine, and the config file's sections applied at
start-up (on SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from incidents.db import create_db_engine, make_session_factory, session_scope
from incidents.exceptions import NotFound
from incidents.oncall import lookup
from incidents.oncall.documents import SchedulesDocument, UsersDocument
from incidents.oncall.store import replace_schedules, replace_users
from tests.conftest import AUTH

from .documents import DAYTIME, PRIMARY, USERS, schedules
from .helpers import utc


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = create_db_engine(db_url)
    factory = make_session_factory(engine)
    with session_scope(factory) as setup:
        replace_users(setup, UsersDocument.model_validate(USERS))
        replace_schedules(setup, SchedulesDocument.model_validate(schedules(PRIMARY, DAYTIME)))
    with factory() as reading:
        yield reading
    engine.dispose()


def test_oncall_names_the_users_with_their_contacts(session: Session) -> None:
    found = lookup.oncall(session, "primary", utc("2026-11-03T09:00"))
    assert [u.name for u in found.users] == ["alice"]
    assert found.users[0].phone == "+15005550006"
    assert [r.channel for r in found.users[0].notification_rules] == ["slack", "sms", "voice"]
    assert [r.delay.total_seconds() for r in found.users[0].notification_rules] == [0, 60, 300]
    assert (found.gap, found.source, found.schedule) == (False, "layer 0", "primary")
    gap = lookup.oncall(session, "daytime", utc("2026-11-07T12:00"))
    assert (gap.users, gap.gap, gap.source) == ([], True, None)
    with pytest.raises(NotFound):
        lookup.oncall(session, "nope", utc("2026-11-03T09:00"))


def test_team_oncall_takes_the_schedules_of_the_team(session: Session) -> None:
    assert [u.name for u in lookup.team_oncall(session, "database", utc("2026-11-09T08:00"))] == [
        "bob"
    ]
    lunch = lookup.team_oncall(session, "database", utc("2026-11-09T11:30"))
    assert [u.name for u in lunch] == ["carol"]
    assert lookup.team_oncall(session, "nobody", utc("2026-11-09T08:00")) == []


def test_users_by_name_phone_slack_id_and_email(session: Session) -> None:
    alice = lookup.user_by_name(session, "alice")
    assert alice is not None and alice.time_zone == "Europe/Berlin"
    assert lookup.user_by_phone(session, "+15005550007") == lookup.user_by_name(session, "bob")
    assert lookup.user_by_phone(session, "+1 500-555-0007") == lookup.user_by_name(session, "bob")
    assert lookup.user_by_slack_id(session, "U0ALICE01") == alice
    assert lookup.user_by_email(session, "Carol@Example.com") == lookup.user_by_name(
        session, "carol"
    )
    assert lookup.user_by_name(session, "mallory") is None
    assert lookup.user_by_phone(session, "+19999999999") is None
    assert lookup.user_by_slack_id(session, "U999") is None


def test_a_directory_snapshot_answers_without_more_reads(session: Session) -> None:
    snapshot = lookup.directory(session)
    assert lookup.directory(session) is snapshot  # nothing changed: the same one
    assert snapshot.oncall("primary", utc("2026-11-03T11:30")).users[0].name == "carol"
    assert [s.name for s in snapshot.team_schedules("database")] == ["primary"]


def _settings(users: Any = None, schedule_list: Any = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if users is not None:
        values["users"] = copy.deepcopy(users["users"])
    if schedule_list is not None:
        values["schedules"] = copy.deepcopy(schedule_list)
    return values


def test_the_config_files_sections_are_applied_at_start_up(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(db_url, **_settings(USERS, [PRIMARY]))
    assert [u["name"] for u in client.get("/api/v1/users", headers=AUTH).json()["users"]] == [
        "alice",
        "bob",
        "carol",
    ]
    stored = client.get("/api/v1/schedules/primary", headers=AUTH).json()
    assert stored["layers"][0]["users"] == ["alice", "bob"]
    # Changed through the API, then a restart with the same file: the API's change stays.
    changed = copy.deepcopy(PRIMARY)
    changed["layers"][0]["users"] = ["bob", "alice"]
    put = client.put("/api/v1/schedules", json=schedules(changed), headers=AUTH)
    assert put.status_code == 200
    swap = {"user": "carol", "from": "2999-01-01T00:00:00Z", "to": "2999-01-02T00:00:00Z"}
    added = client.post("/api/v1/schedules/primary/overrides", json=swap, headers=AUTH).json()
    again = client_for(db_url, **_settings(USERS, [PRIMARY]))
    stored = again.get("/api/v1/schedules/primary", headers=AUTH).json()
    assert stored["layers"][0]["users"] == ["bob", "alice"]
    # The file changes: it is applied, and the API's override that has not ended is kept.
    edited = copy.deepcopy(PRIMARY)
    edited["layers"][0]["rotation"] = "2w"
    edited["overrides"] = [
        {"user": "bob", "from": "2026-11-03T00:00:00Z", "to": "2026-11-04T00:00:00Z"}
    ]
    third = client_for(db_url, **_settings(USERS, [edited]))
    stored = third.get("/api/v1/schedules/primary", headers=AUTH).json()
    assert stored["layers"][0] == {**edited["layers"][0], "restrictions": []}
    assert [o["id"] for o in stored["overrides"]][1:] == [added["id"]]
    assert stored["overrides"][0]["id"].startswith("file-")
    # The same file again: the same ids, nothing doubled.
    fourth = client_for(db_url, **_settings(USERS, [edited]))
    assert fourth.get("/api/v1/schedules/primary", headers=AUTH).json() == stored


def test_a_file_that_disagrees_with_the_stored_schedules_is_not_applied(
    db_url: str, client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(db_url, **_settings(USERS, [PRIMARY]))
    assert client.get("/api/v1/schedules/primary", headers=AUTH).status_code == 200
    fewer = {"users": [u for u in USERS["users"] if u["name"] != "bob"]}
    with caplog.at_level(logging.ERROR, logger="incidents.oncall.config_file"):
        started = client_for(db_url, **_settings(fewer))
    assert "schedules[0].layers[0].users[1]" in caplog.text
    # The service runs, with the stored documents.
    names = [u["name"] for u in started.get("/api/v1/users", headers=AUTH).json()["users"]]
    assert "bob" in names
