"""Schedule math without a database: hand-offs across daylight-saving changes, restrictions,
layers, overrides and gaps."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from incidents.oncall.rotation import localize

from .helpers import layer, plan, spans, utc, who

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600


def test_localize_a_plain_a_skipped_and_a_repeated_wall_clock_time() -> None:
    assert localize(datetime(2026, 7, 1, 9, 0), BERLIN) == utc("2026-07-01T07:00:00")
    # 02:30 does not exist on 2026-03-29 in Berlin: the change at 03:00 CEST (01:00 UTC).
    assert localize(datetime(2026, 3, 29, 2, 30), BERLIN) == utc("2026-03-29T01:00:00")
    # 02:30 happens twice on 2026-10-25: the first time (CEST).
    assert localize(datetime(2026, 10, 25, 2, 30), BERLIN) == utc("2026-10-25T00:30:00")
    assert localize(datetime(2026, 3, 8, 2, 15), NEW_YORK) == utc("2026-03-08T07:00:00")


def test_a_daily_rotation_hands_off_at_the_same_wall_clock_time_across_spring_forward() -> None:
    p = plan(layer(["alice", "bob"], "1d", "2026-03-27T09:00:00"), time_zone="Europe/Berlin")
    slots = p.timeline(utc("2026-03-27T08:00"), utc("2026-03-31T07:00"))
    assert spans(slots) == [
        ("03-27 08:00", "03-28 08:00", "alice"),  # 09:00 CET
        ("03-28 08:00", "03-29 07:00", "bob"),  # 09:00 CET to 09:00 CEST: 23 hours
        ("03-29 07:00", "03-30 07:00", "alice"),
        ("03-30 07:00", "03-31 07:00", "bob"),
    ]
    assert _hours(slots[1].start, slots[1].end) == 23


def test_a_daily_rotation_across_fall_back_lasts_25_hours() -> None:
    p = plan(layer(["alice", "bob"], "1d", "2026-10-23T09:00:00+02:00"), time_zone="Europe/Berlin")
    slots = p.timeline(utc("2026-10-24T07:00"), utc("2026-10-26T08:00"))
    assert spans(slots) == [
        ("10-24 07:00", "10-25 08:00", "bob"),
        ("10-25 08:00", "10-26 08:00", "alice"),
    ]
    assert _hours(slots[0].start, slots[0].end) == 25


def test_a_weekly_rotation_in_new_york_across_both_changes() -> None:
    p = plan(
        layer(["alice", "bob"], "1w", "2026-03-02T09:00:00-05:00"), time_zone="America/New_York"
    )
    march = p.timeline(utc("2026-03-02T14:00"), utc("2026-03-16T13:00"))
    assert spans(march) == [
        ("03-02 14:00", "03-09 13:00", "alice"),  # 167 hours: the week lost one
        ("03-09 13:00", "03-16 13:00", "bob"),
    ]
    assert p.at(utc("2026-10-26T13:00")).user == "alice"  # week 34
    november = p.timeline(utc("2026-10-26T13:00"), utc("2026-11-09T14:00"))
    assert spans(november) == [
        ("10-26 13:00", "11-02 14:00", "alice"),  # 169 hours
        ("11-02 14:00", "11-09 14:00", "bob"),
    ]


def test_an_hourly_rotation_counts_real_hours() -> None:
    p = plan(layer(["alice", "bob"], "12h", "2026-03-28T21:00:00"), time_zone="Europe/Berlin")
    slots = p.timeline(utc("2026-03-28T20:00"), utc("2026-03-30T08:00"))
    assert [_hours(s.start, s.end) for s in slots] == [12, 12, 12]
    # 21:00 CET, then 09:00 wall-clock becomes 10:00 CEST after the change.
    assert spans(slots)[1] == ("03-29 08:00", "03-29 20:00", "bob")


def test_a_handoff_at_a_skipped_time_happens_at_the_change() -> None:
    p = plan(layer(["alice", "bob"], "1d", "2026-03-27T02:30:00"), time_zone="Europe/Berlin")
    assert p.layers[0][0].handoff(2) == utc("2026-03-29T01:00")
    assert p.layers[0][0].handoff(3) == utc("2026-03-30T00:30")
    assert who(p, "2026-03-29T00:59") == "bob"
    assert who(p, "2026-03-29T01:00") == "alice"


def test_users_take_turns_far_from_the_first_handoff() -> None:
    p = plan(layer(["a", "b", "c"], "1d", "2026-01-01T09:00:00"), time_zone="America/New_York")
    rotation = p.layers[0][0]
    for days in (0, 1, 2, 68, 69, 300, 1000):
        instant = utc("2026-01-01T14:00") + timedelta(days=days, hours=1)
        k = rotation.index(instant)
        assert k is not None
        assert rotation.handoff(k) <= instant < rotation.handoff(k + 1)
        assert p.at(instant).user == "abc"[k % 3]


def test_before_the_first_handoff_the_layer_has_nobody() -> None:
    p = plan(layer(["alice"], "1w", "2026-11-16T09:00:00Z"))
    assert who(p, "2026-11-16T08:59") is None
    assert p.at(utc("2026-11-16T08:59")).gap
    assert who(p, "2026-11-16T09:00") == "alice"


def test_business_hours_restriction() -> None:
    p = plan(
        layer(
            ["alice"],
            "1w",
            "2026-11-02T00:00:00",
            restrictions=[{"days": WEEKDAYS, "from": "09:00", "to": "17:00"}],
        ),
        time_zone="Europe/Berlin",
    )
    # Friday 2026-11-06 in Berlin is UTC+1.
    assert who(p, "2026-11-06T15:59") == "alice"
    assert who(p, "2026-11-06T16:00") is None
    assert who(p, "2026-11-07T12:00") is None  # Saturday
    assert who(p, "2026-11-09T07:59") is None
    assert who(p, "2026-11-09T08:00") == "alice"  # Monday 09:00
    week = p.timeline(utc("2026-11-09T00:00"), utc("2026-11-16T00:00"))
    on = [s for s in week if not s.gap]
    assert len(on) == 5
    assert all(_hours(s.start, s.end) == 8 for s in on)


def test_a_window_across_midnight_belongs_to_the_day_it_starts() -> None:
    p = plan(
        layer(
            ["night"],
            "1w",
            "2026-03-01T00:00:00",
            restrictions=[{"days": ["fri", "sat"], "from": "22:00", "to": "06:00"}],
        ),
        time_zone="Europe/Berlin",
    )
    # Friday 2026-03-27 22:00 CET to Saturday 06:00 CET.
    assert who(p, "2026-03-27T20:59") is None
    assert who(p, "2026-03-27T21:00") == "night"
    assert who(p, "2026-03-28T04:59") == "night"
    assert who(p, "2026-03-28T05:00") is None
    # Saturday 22:00 CET to Sunday 06:00 CEST, across the change: 7 real hours.
    slots = [s for s in p.timeline(utc("2026-03-28T12:00"), utc("2026-03-29T12:00")) if not s.gap]
    assert spans(slots) == [("03-28 21:00", "03-29 04:00", "night")]
    # Sunday night has no window (Sunday is not listed), Thursday neither.
    assert who(p, "2026-03-29T23:00") is None
    assert who(p, "2026-03-26T23:00") is None


def test_a_later_layer_wins_where_it_has_someone() -> None:
    p = plan(
        layer(["alice", "bob"], "1w", "2026-11-02T09:00:00"),
        layer(
            ["carol"],
            "1d",
            "2026-11-02T00:00:00",
            restrictions=[{"days": WEEKDAYS, "from": "12:00", "to": "14:00"}],
        ),
        time_zone="UTC",
    )
    assert p.at(utc("2026-11-03T11:59")).user == "alice"
    lunch = p.at(utc("2026-11-03T12:00"))
    assert (lunch.user, lunch.source, lunch.layer) == ("carol", "layer 1", 1)
    assert p.at(utc("2026-11-03T14:00")).source == "layer 0"
    assert p.at(utc("2026-11-10T13:00")).user == "carol"
    assert p.at(utc("2026-11-10T15:00")).user == "bob"


def test_an_override_in_the_middle_of_a_shift_splits_it() -> None:
    p = plan(
        layer(["alice", "bob"], "1d", "2026-11-02T09:00:00"),
        time_zone="Europe/Berlin",
        overrides=[
            {"id": "swap", "user": "carol", "from": "2026-11-02T12:00", "to": "2026-11-02T15:00"},
            {"id": "late", "user": "dave", "from": "2026-11-02T14:00", "to": "2026-11-02T16:00"},
        ],
    )
    slots = p.timeline(utc("2026-11-02T08:00"), utc("2026-11-03T08:00"))
    assert spans(slots) == [
        ("11-02 08:00", "11-02 11:00", "alice"),
        ("11-02 11:00", "11-02 13:00", "carol"),
        ("11-02 13:00", "11-02 15:00", "dave"),  # the later override wins where they overlap
        ("11-02 15:00", "11-03 08:00", "alice"),
    ]
    assert [s.source for s in slots] == ["layer 0", "override", "override", "layer 0"]
    assert slots[1].override_id == "swap"


def test_an_override_covers_a_gap() -> None:
    p = plan(
        layer(
            ["alice"],
            "1w",
            "2026-11-02T00:00:00",
            restrictions=[{"from": "09:00", "to": "17:00"}],
        ),
        overrides=[{"user": "bob", "from": "2026-11-02T16:00:00Z", "to": "2026-11-02T20:00:00Z"}],
    )
    slots = p.timeline(utc("2026-11-02T08:00"), utc("2026-11-02T22:00"))
    assert spans(slots) == [
        ("11-02 08:00", "11-02 09:00", None),
        ("11-02 09:00", "11-02 16:00", "alice"),
        ("11-02 16:00", "11-02 20:00", "bob"),
        ("11-02 20:00", "11-02 22:00", None),
    ]
    gaps = p.gaps(utc("2026-11-02T08:00"), utc("2026-11-02T22:00"))
    assert [(g.start, g.end) for g in gaps] == [
        (utc("2026-11-02T08:00"), utc("2026-11-02T09:00")),
        (utc("2026-11-02T20:00"), utc("2026-11-02T22:00")),
    ]


def test_the_same_person_in_consecutive_shifts_is_one_shift() -> None:
    p = plan(layer(["alice", "alice", "bob"], "1d", "2026-11-02T00:00:00"))
    slots = p.timeline(utc("2026-11-02T00:00"), utc("2026-11-05T00:00"))
    assert spans(slots) == [
        ("11-02 00:00", "11-04 00:00", "alice"),
        ("11-04 00:00", "11-05 00:00", "bob"),
    ]


@pytest.mark.parametrize("text", ["2026-11-02T00:00:00Z", "2026-11-02T01:00:00+01:00"])
def test_a_handoff_with_any_offset_names_the_same_instant(text: str) -> None:
    p = plan(layer(["alice", "bob"], "1d", text), time_zone="Asia/Kolkata")
    assert who(p, "2026-11-02T23:59") == "alice"
    assert who(p, "2026-11-03T00:00") == "bob"
