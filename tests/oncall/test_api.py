"""The users and schedules endpoints on SQLite and PostgreSQL: round trips, 422 paths,
who is on call, shifts, gaps as problems, and overrides."""

from __future__ import annotations

import copy
from itertools import pairwise
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import AUTH

from .documents import DAYTIME, PRIMARY, USERS, schedules


def _put(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    return client.put(f"/api/v1/{path}", json=body, headers=AUTH)


def _get(client: TestClient, path: str, **params: str) -> Any:
    return client.get(f"/api/v1/{path}", params=params, headers=AUTH)


def _shifts(client: TestClient, name: str, start: str, end: str) -> Any:
    return _get(client, f"schedules/{name}/shifts", **{"from": start, "to": end})


@pytest.fixture
def loaded(client: TestClient) -> TestClient:
    assert _put(client, "users", USERS).status_code == 200
    response = _put(client, "schedules", schedules(PRIMARY, DAYTIME))
    assert response.status_code == 200, response.text
    return client


def test_empty_documents_before_any_put(client: TestClient) -> None:
    assert _get(client, "users").json() == {"users": []}
    assert _get(client, "schedules").json() == {"schedules": [], "problems": []}


def test_put_then_get_gives_the_same_documents(client: TestClient) -> None:
    response = _put(client, "users", USERS)
    assert response.status_code == 200, response.text
    users = _get(client, "users").json()
    assert users == response.json()
    assert users["users"][0] == USERS["users"][0]
    assert users["users"][1]["time_zone"] == "UTC"  # the default, filled in
    response = _put(client, "schedules", schedules(PRIMARY))
    assert response.status_code == 200, response.text
    stored = _get(client, "schedules", at="2026-11-03T10:00:00Z").json()
    assert stored["schedules"] == response.json()["schedules"]
    assert stored["schedules"][0]["layers"][0] == PRIMARY["layers"][0] | {"restrictions": []}
    assert _get(client, "schedules/primary").json() == stored["schedules"][0]
    # What GET returns, PUT takes back unchanged.
    again = _put(client, "schedules", {"schedules": stored["schedules"]})
    assert again.json()["schedules"] == stored["schedules"]


def _bad(path: list[Any], value: Any, document: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["schedules", 0, "layers", 1, "rotation"], "90m", "schedules[0].layers[1].rotation"),
        (["schedules", 0, "layers", 0, "rotation"], "1d12h", "schedules[0].layers[0].rotation"),
        (["schedules", 0, "time_zone"], "Europe/Berln", "schedules[0].time_zone"),
        (["schedules", 0, "layers", 0, "handoff"], "next monday", "schedules[0].layers[0].handoff"),
        (
            ["schedules", 0, "layers", 1, "restrictions", 0, "from"],
            "25:00",
            "schedules[0].layers[1].restrictions[0].from",
        ),
        (
            ["schedules", 0, "layers", 1, "restrictions", 0, "days"],
            ["mon", "funday"],
            "schedules[0].layers[1].restrictions[0].days[1]",
        ),
        (["schedules", 0, "layers"], [], "schedules[0].layers"),
        (["schedules", 0, "name"], "has spaces", "schedules[0].name"),
        (
            ["schedules", 0, "overrides"],
            [{"user": "bob", "from": "2026-11-04T10:00:00Z", "to": "2026-11-04T09:00:00Z"}],
            "schedules[0].overrides[0].to",
        ),
    ],
)
def test_a_bad_schedule_is_a_422_naming_its_path(
    loaded: TestClient, path: list[Any], value: Any, field: str
) -> None:
    response = _put(loaded, "schedules", _bad(path, value, schedules(PRIMARY)))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field, body
    assert body["message"].startswith(field)


def test_schedules_must_name_known_users(loaded: TestClient) -> None:
    document = schedules(PRIMARY)
    document["schedules"][0]["layers"][0]["users"] = ["alice", "mallory"]
    document["schedules"][0]["overrides"] = [
        {"user": "trent", "from": "2026-11-04T10:00:00Z", "to": "2026-11-04T11:00:00Z"}
    ]
    response = _put(loaded, "schedules", document)
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "schedules[0].layers[0].users[1]"
    assert [e["field"] for e in body["errors"]] == [
        "schedules[0].layers[0].users[1]",
        "schedules[0].overrides[0].user",
    ]
    assert "mallory" in body["message"]
    # Nothing was stored.
    assert _get(loaded, "schedules/primary").json()["layers"][0]["users"] == ["alice", "bob"]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["users", 1, "phone"], "555-0100", "users[1].phone"),
        (["users", 1, "phone"], "+0155500", "users[1].phone"),
        (["users", 0, "time_zone"], "Mars/Olympus", "users[0].time_zone"),
        (["users", 2, "name"], "alice", "users[2].name"),
        (["users", 1, "phone"], "+15005550006", "users[1].phone"),
        (["users", 0, "email"], "alice-at-example", "users[0].email"),
        (["users", 1, "slack_user_id"], "bob", "users[1].slack_user_id"),
        (
            ["users", 0, "notification_rules", 1, "channel"],
            "pigeon",
            "users[0].notification_rules[1].channel",
        ),
        (
            ["users", 0, "notification_rules", 2, "after"],
            "soon",
            "users[0].notification_rules[2].after",
        ),
        (
            ["users", 2, "notification_rules"],
            [{"channel": "sms", "after": "0m"}],
            "users[2].notification_rules[0].channel",
        ),
        (["users", 0, "nickname"], "al", "users[0].nickname"),
    ],
)
def test_a_bad_users_document_is_a_422_naming_its_path(
    client: TestClient, path: list[Any], value: Any, field: str
) -> None:
    response = _put(client, "users", _bad(path, value, USERS))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert _get(client, "users").json() == {"users": []}


def test_leaving_out_a_user_a_schedule_names_is_a_conflict(loaded: TestClient) -> None:
    fewer = {"users": [u for u in USERS["users"] if u["name"] != "carol"]}
    response = _put(loaded, "users", fewer)
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflict"
    assert "'carol'" in body["message"]
    assert "'primary'" in body["message"] and "'daytime'" in body["message"]
    assert len(_get(loaded, "users").json()["users"]) == 3
    # Once no schedule names her, she can go.
    assert _put(loaded, "schedules", {"schedules": []}).status_code == 200
    assert _put(loaded, "users", fewer).status_code == 200


def test_who_is_on_call(loaded: TestClient) -> None:
    # Tuesday 2026-11-03, 10:00 in Berlin: alice's week (from Monday 09:00).
    body = _get(loaded, "schedules/primary/oncall", at="2026-11-03T09:00:00Z").json()
    assert body == {
        "schedule": "primary",
        "at": "2026-11-03T09:00:00Z",
        "users": ["alice"],
        "gap": False,
        "source": "layer 0",
        "until": "2026-11-03T11:00:00Z",
    }
    lunch = _get(loaded, "schedules/primary/oncall", at="2026-11-03T11:30:00Z").json()
    assert (lunch["users"], lunch["source"]) == (["carol"], "layer 1")
    next_week = _get(loaded, "schedules/primary/oncall", at="2026-11-09T08:00:00Z").json()
    assert next_week["users"] == ["bob"]
    # A time without a zone is UTC.
    naive = _get(loaded, "schedules/primary/oncall", at="2026-11-09T08:00:00").json()
    assert naive["at"] == "2026-11-09T08:00:00Z"


def test_a_gap_is_visible_in_oncall_shifts_and_problems(loaded: TestClient) -> None:
    night = _get(loaded, "schedules/daytime/oncall", at="2026-11-03T20:00:00Z").json()
    assert night["users"] == [] and night["gap"] is True and night["source"] is None
    assert night["until"] == "2026-11-04T09:00:00Z"
    shifts = _shifts(loaded, "daytime", "2026-11-03T00:00Z", "2026-11-04T00:00Z").json()
    assert shifts["shifts"] == [
        {
            "user": None,
            "start": "2026-11-03T00:00:00Z",
            "end": "2026-11-03T09:00:00Z",
            "gap": True,
            "source": None,
            "layer": None,
            "override_id": None,
        },
        {
            "user": "carol",
            "start": "2026-11-03T09:00:00Z",
            "end": "2026-11-03T17:00:00Z",
            "gap": False,
            "source": "layer 0",
            "layer": 0,
            "override_id": None,
        },
        {
            "user": None,
            "start": "2026-11-03T17:00:00Z",
            "end": "2026-11-04T00:00:00Z",
            "gap": True,
            "source": None,
            "layer": None,
            "override_id": None,
        },
    ]
    # Friday noon: the week ahead has the weekend and four nights uncovered.
    problems = _get(loaded, "schedules", at="2026-11-06T12:00:00Z").json()["problems"]
    assert {p["schedule"] for p in problems} == {"daytime"}
    assert problems[0]["gap"] == {"from": "2026-11-06T17:00:00Z", "to": "2026-11-09T09:00:00Z"}
    assert len(problems) == 5


def test_shifts_cover_the_range_and_the_range_is_bounded(loaded: TestClient) -> None:
    ok = _shifts(loaded, "primary", "2026-11-01T00:00Z", "2026-12-01T00:00Z")
    assert ok.status_code == 200
    shifts = ok.json()["shifts"]
    assert shifts[0]["start"] == "2026-11-01T00:00:00Z"
    assert shifts[-1]["end"] == "2026-12-01T00:00:00Z"
    assert all(a["end"] == b["start"] for a, b in pairwise(shifts))
    assert shifts[0]["gap"]  # before the first hand-off on 2026-11-02
    for params, field in [
        ({"from": "2026-11-01T00:00Z", "to": "2027-03-01T00:00Z"}, "to"),
        ({"from": "2026-11-01T00:00Z", "to": "2026-11-01T00:00Z"}, "to"),
        ({"from": "9000-01-01T00:00Z"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"since": "2026-11-01T00:00Z"}, "since"),
    ]:
        response = _get(loaded, "schedules/primary/shifts", **params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["field"] == field
    assert _get(loaded, "schedules/primary/oncall", at="0001-01-01T00:00Z").status_code == 422


def test_unknown_schedules_are_404(loaded: TestClient) -> None:
    for path in ["nope", "nope/oncall", "nope/shifts", "nope/overrides", "nope.ics"]:
        response = _get(loaded, f"schedules/{path}")
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


def test_overrides_through_the_api(loaded: TestClient) -> None:
    swap = {"user": "carol", "from": "2026-11-03T10:00:00Z", "to": "2026-11-03T18:00:00Z"}
    created = loaded.post("/api/v1/schedules/primary/overrides", json=swap, headers=AUTH)
    assert created.status_code == 201, created.text
    override = created.json()
    assert override == {"id": override["id"], **swap}
    listed = _get(loaded, "schedules/primary/overrides").json()
    assert listed == [override]
    at = _get(loaded, "schedules/primary/oncall", at="2026-11-03T15:00:00Z").json()
    assert (at["users"], at["source"], at["until"]) == (["carol"], "override", swap["to"])
    shifts = _shifts(loaded, "primary", "2026-11-03T08:00Z", "2026-11-03T20:00Z").json()["shifts"]
    assert [(s["user"], s["source"], s["override_id"]) for s in shifts] == [
        ("alice", "layer 0", None),
        ("carol", "override", override["id"]),
        ("alice", "layer 0", None),
    ]
    # The override is part of the schedules document.
    document = _get(loaded, "schedules/primary").json()
    assert document["overrides"] == [override]

    gone = loaded.delete(f"/api/v1/schedules/primary/overrides/{override['id']}", headers=AUTH)
    assert gone.status_code == 200
    assert gone.json() == override
    assert _get(loaded, "schedules/primary/overrides").json() == []
    again = loaded.delete(f"/api/v1/schedules/primary/overrides/{override['id']}", headers=AUTH)
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"user": "mallory", "from": "2026-11-03T10:00Z", "to": "2026-11-03T11:00Z"}, 422, "user"),
        ({"user": "bob", "from": "2026-11-03T10:00Z", "to": "2026-11-03T09:00Z"}, 422, "to"),
        ({"user": "bob", "from": "2026-11-03T10:00Z"}, 422, "to"),
        ({"user": "bob", "from": "soon", "to": "2026-11-03T11:00Z"}, 422, "from"),
        ({"user": "bob", "from": "2026-11-03T10:00Z", "to": "2026-11-03T11:00Z", "x": 1}, 422, "x"),
    ],
)
def test_bad_overrides_are_refused(
    loaded: TestClient, body: dict[str, Any], status: int, field: str
) -> None:
    response = loaded.post("/api/v1/schedules/primary/overrides", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert _get(loaded, "schedules/primary/overrides").json() == []


def test_an_override_without_a_zone_is_in_the_schedules_zone(loaded: TestClient) -> None:
    body = {"user": "carol", "from": "2026-11-03T10:00:00", "to": "2026-11-03T11:00:00"}
    created = loaded.post("/api/v1/schedules/primary/overrides", json=body, headers=AUTH)
    assert created.status_code == 201
    # 10:00 in Berlin is 09:00 UTC.
    at = _get(loaded, "schedules/primary/oncall", at="2026-11-03T09:30:00Z").json()
    assert at["users"] == ["carol"]
    assert _get(loaded, "schedules/primary/oncall", at="2026-11-03T10:00:00Z").json()["users"] == [
        "alice"
    ]


def test_the_endpoints_need_the_token(loaded: TestClient) -> None:
    for path in ["users", "schedules", "schedules/primary/oncall", "schedules/primary.ics"]:
        assert loaded.get(f"/api/v1/{path}").status_code == 401, path
    assert loaded.put("/api/v1/users", json=USERS).status_code == 401
