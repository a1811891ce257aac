"""Properties of the final timeline for random schedules: it covers the range exactly with
shifts and gaps, nothing overlaps, and it agrees with `Plan.at` and with other ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.oncall.documents import Schedule
from incidents.oncall.timeline import Plan

# Zones with DST both ways, a 30-minute DST change, and none.
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
BASE = datetime(2026, 1, 1, tzinfo=UTC)
USERS = ["a", "b", "c"]


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


restrictions = st.lists(
    st.builds(
        lambda days, start, length: {
            "days": days,
            "from": _clock(start),
            "to": _clock((start + length) % 1440),
        },
        st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1)
        .map(lambda d: sorted(set(d)))
        .filter(bool),
        st.integers(0, 1439),
        st.integers(1, 1440),
    ),
    max_size=2,
)

layers = st.builds(
    lambda users, rotation, offset, local, restricted: {
        "users": users,
        "rotation": rotation,
        "handoff": (BASE + timedelta(minutes=offset)).replace(tzinfo=None if local else UTC),
        "restrictions": restricted,
    },
    st.lists(st.sampled_from(USERS), min_size=1, max_size=3),
    st.sampled_from(["1h", "5h", "12h", "1d", "2d", "1w"]),
    st.integers(0, 365 * 24 * 60),
    st.booleans(),
    restrictions,
)

overrides = st.lists(
    st.builds(
        lambda user, start, length: {
            "user": user,
            "from": BASE + timedelta(minutes=start),
            "to": BASE + timedelta(minutes=start + length),
        },
        st.sampled_from(["d", "e"]),
        st.integers(0, 365 * 24 * 60),
        st.integers(1, 5 * 24 * 60),
    ),
    max_size=3,
)


@st.composite
def plans(draw: Any) -> Plan:
    document = {
        "name": "s",
        "time_zone": draw(st.sampled_from(ZONES)),
        "layers": draw(st.lists(layers, min_size=1, max_size=3)),
        "overrides": draw(overrides),
    }
    return Plan(Schedule.model_validate(document))


ranges = st.tuples(st.integers(0, 365 * 24 * 60), st.integers(1, 20 * 24 * 60)).map(
    lambda r: (BASE + timedelta(minutes=r[0]), BASE + timedelta(minutes=r[0] + r[1]))
)


@settings(max_examples=150, deadline=None)
@given(plans(), ranges, st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_the_timeline_covers_the_range_exactly_and_agrees_with_at(
    plan: Plan, span: tuple[datetime, datetime], probes: list[float]
) -> None:
    start, end = span
    slots = plan.timeline(start, end)
    assert slots[0].start == start
    assert slots[-1].end == end
    for slot in slots:
        assert slot.start < slot.end
        assert slot.gap == (slot.user is None)
        assert slot.gap == (slot.source is None)
    for before, after in pairwise(slots):
        assert before.end == after.start  # no overlap, no hole
        assert not before.same_as(after)  # merged where nothing changes
    for fraction in probes:
        instant = start + (end - start) * fraction
        instant = min(instant, end - timedelta(microseconds=1))
        holder = next(s for s in slots if s.start <= instant < s.end)
        assert plan.at(instant).same_as(holder)


@settings(max_examples=80, deadline=None)
@given(plans(), ranges, st.floats(0.01, 0.99))
def test_a_range_cut_in_two_gives_the_same_timeline(
    plan: Plan, span: tuple[datetime, datetime], fraction: float
) -> None:
    start, end = span
    cut = start + (end - start) * fraction
    whole = plan.timeline(start, end)
    pieces = plan.timeline(start, cut) + plan.timeline(cut, end)
    # Joining the pieces at the cut where the same person goes on gives the whole.
    joined = []
    for slot in pieces:
        if joined and joined[-1].same_as(slot) and joined[-1].end == slot.start:
            joined[-1] = type(slot)(
                joined[-1].start, slot.end, slot.user, slot.layer, slot.override_id
            )
        else:
            joined.append(slot)
    assert joined == whole
