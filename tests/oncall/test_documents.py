"""Validating documents outside the API: every problem named by its path, at once."""

from __future__ import annotations

import pytest

from incidents.exceptions import ValidationFailed
from incidents.oncall.documents import Restriction, parse_schedules, parse_users

from .documents import PRIMARY, USERS, schedules


def test_good_documents_parse() -> None:
    assert [u.name for u in parse_users(USERS).users] == ["alice", "bob", "carol"]
    assert parse_schedules(schedules(PRIMARY)).schedules[0].layers[1].restrictions[0].to == "13:00"


def test_every_problem_is_named_by_its_path() -> None:
    document = schedules(PRIMARY, PRIMARY)
    document["schedules"][0]["layers"][0]["rotation"] = "1y"
    document["schedules"][1]["layers"][1]["restrictions"][0]["days"] = ["mon", "mon"]
    with pytest.raises(ValidationFailed) as caught:
        parse_schedules(document)
    fields = [e["field"] for e in caught.value.extra["errors"]]
    assert fields == [
        "schedules[0].layers[0].rotation",
        "schedules[1].layers[1].restrictions[0].days[1]",
    ]
    assert caught.value.field == "schedules[0].layers[0].rotation"
    duplicate = schedules(PRIMARY, PRIMARY)
    with pytest.raises(ValidationFailed) as caught:
        parse_schedules(duplicate)
    assert caught.value.field == "schedules[1].name"


@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        ("09:00", "17:00", 480),
        ("22:00", "06:00", 480),
        ("00:00", "24:00", 1440),
        ("08:00", "08:00", 1440),
    ],
)
def test_restriction_lengths(start: str, end: str, minutes: int) -> None:
    assert Restriction.model_validate({"from": start, "to": end}).length_minutes() == minutes


@pytest.mark.parametrize("rotation", ["0d", "53w", "400d", "1.5d", "d", "1 w", "1W", "30m"])
def test_rotations_that_are_refused(rotation: str) -> None:
    document = schedules(PRIMARY)
    document["schedules"][0]["layers"][0]["rotation"] = rotation
    with pytest.raises(ValidationFailed) as caught:
        parse_schedules(document)
    assert caught.value.field == "schedules[0].layers[0].rotation"
