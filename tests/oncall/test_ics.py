"""The iCalendar feed: RFC 5545 framing, read back by the icalendar package, one event per
shift of the timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
import pytest
from fastapi.testclient import TestClient

from incidents.oncall.ics import calendar, fold
from incidents.oncall.timeline import Slot
from tests.conftest import AUTH

from .documents import PRIMARY, USERS, schedules


def test_long_lines_are_folded_at_75_octets_without_splitting_characters() -> None:
    line = "SUMMARY:" + "ä" * 100
    folded = fold(line)
    parts = folded.split("\r\n")
    assert all(len(p.encode()) <= 75 for p in parts)
    assert all(p.startswith(" ") for p in parts[1:])
    assert "".join(p.removeprefix(" ") for p in parts) == line


def test_text_is_escaped_and_parses_back() -> None:
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)
    slots = [
        Slot(start, start + timedelta(hours=8), "o'neil, jr; \\x", 0),
        Slot(start + timedelta(hours=8), start + timedelta(hours=9), None),
        Slot(start + timedelta(hours=9), start + timedelta(hours=10), "bob", None, "ov1"),
    ]
    text = calendar("primary", slots, now=start)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    parsed = icalendar.Calendar.from_ical(text)
    events = parsed.walk("VEVENT")
    assert len(events) == 2  # the gap is not an event
    assert str(events[0]["SUMMARY"]) == "o'neil, jr; \\x on call (primary)"
    assert events[0]["DTSTART"].dt == start
    assert "override" in str(events[1]["DESCRIPTION"])


@pytest.fixture
def feed_client(client: TestClient) -> TestClient:
    now = datetime.now(UTC).replace(microsecond=0)
    schedule = dict(PRIMARY, time_zone="America/New_York")
    schedule["layers"] = [
        dict(layer, handoff=(now - timedelta(days=30)).isoformat()) for layer in PRIMARY["layers"]
    ]
    assert client.put("/api/v1/users", json=USERS, headers=AUTH).status_code == 200
    response = client.put("/api/v1/schedules", json=schedules(schedule), headers=AUTH)
    assert response.status_code == 200, response.text
    swap = {
        "user": "carol",
        "from": (now + timedelta(days=2)).isoformat(),
        "to": (now + timedelta(days=3)).isoformat(),
    }
    assert (
        client.post("/api/v1/schedules/primary/overrides", json=swap, headers=AUTH).status_code
        == 201
    )
    return client


def test_the_feed_has_every_shift_of_the_past_week_and_next_60_days(
    feed_client: TestClient,
) -> None:
    response = feed_client.get("/api/v1/schedules/primary.ics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/calendar")
    raw = response.content
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    parsed = icalendar.Calendar.from_ical(raw)
    assert str(parsed["VERSION"]) == "2.0"
    assert parsed["PRODID"]
    events = parsed.walk("VEVENT")
    uids = [str(e["UID"]) for e in events]
    assert len(set(uids)) == len(uids)
    for event in events:
        assert event["DTSTAMP"].dt.tzinfo is not None
        assert event["DTSTART"].dt < event["DTEND"].dt
    got = {(str(e["SUMMARY"]).split()[0], e["DTSTART"].dt, e["DTEND"].dt) for e in events}
    now = datetime.now(UTC)
    timeline = feed_client.get(
        "/api/v1/schedules/primary/shifts",
        params={
            "from": (now - timedelta(days=6)).isoformat(),
            "to": (now + timedelta(days=59)).isoformat(),
        },
        headers=AUTH,
    ).json()["shifts"]
    interior = [s for s in timeline[1:-1] if not s["gap"]]
    assert len(interior) > 60  # weekly shifts and weekday lunchtimes
    for shift in interior:
        start = datetime.fromisoformat(shift["start"])
        end = datetime.fromisoformat(shift["end"])
        assert (shift["user"], start, end) in got, shift
    assert any(s["source"] == "override" for s in interior)
    # Fetched again, the same shifts keep their UIDs (calendars update, not duplicate).
    again = icalendar.Calendar.from_ical(
        feed_client.get("/api/v1/schedules/primary.ics", headers=AUTH).content
    )
    later = {str(e["UID"]) for e in again.walk("VEVENT")}
    assert len(set(uids[1:-1]) - later) == 0
