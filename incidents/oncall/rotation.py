"""Rotations and restriction windows in a schedule's time zone: pure functions, no clock.

Every instant here is timezone-aware; results are in UTC. Wall-clock times (a hand-off's
time of day, a restriction's window) become instants through `localize`, which is
defined for every wall-clock time, also those a daylight-saving change skips or repeats.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from incidents.oncall.documents import Layer, Restriction
from incidents.oncall.fields import DAYS, minutes, parse_rotation

Interval = tuple[datetime, datetime]


def wall_clock(instant: datetime, tz: ZoneInfo) -> datetime:
    """What a clock in `tz` reads at `instant` (naive)."""
    return instant.astimezone(tz).replace(tzinfo=None)


def localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant at which a clock in `tz` reads `wall` or later, in UTC.

    A time that exists once is that instant; a repeated one (autumn) is its first
    occurrence; a skipped one (spring, 02:30 in Berlin) is the moment of the change
    (03:00 CEST), so a hand-off or window never starts late by the size of the gap.
    """
    earlier = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if wall_clock(earlier, tz) == wall:
        return earlier
    # Skipped: fold=0 reads it with the offset before the change (too late), fold=1
    # with the offset after it (too early). The change lies between; transitions fall on
    # whole seconds, so bisect on seconds.
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low = int(min(earlier, other).timestamp())
    high = int(max(earlier, other).timestamp()) + 1
    while high - low > 1:
        middle = (low + high) // 2
        if wall_clock(datetime.fromtimestamp(middle, UTC), tz) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


@dataclass(frozen=True)
class Rotation:
    """A layer's hand-offs: the first at `start`, then every `count` `unit`s.

    Hours are real hours. Days and weeks are calendar days in `tz`: every hand-off is at
    the first hand-off's wall-clock time, so a daily rotation across a spring-forward
    change lasts 23 hours.
    """

    start: datetime
    wall: datetime
    count: int
    unit: str
    tz: ZoneInfo
    users: tuple[str, ...]

    @classmethod
    def of(cls, layer: Layer, tz: ZoneInfo) -> Rotation:
        """The rotation of a validated layer in the schedule's zone."""
        count, unit = parse_rotation(layer.rotation)
        handoff = layer.handoff
        if handoff.tzinfo is None or handoff.utcoffset() is None:
            wall = handoff.replace(tzinfo=None)
            start = localize(wall, tz)
        else:
            start = handoff.astimezone(UTC)
            wall = wall_clock(start, tz)
        return cls(start, wall, count, unit, tz, tuple(layer.users))

    @property
    def nominal(self) -> timedelta:
        """The length of a shift without daylight-saving changes."""
        if self.unit == "h":
            return timedelta(hours=self.count)
        return timedelta(days=self.count * (7 if self.unit == "w" else 1))

    def handoff(self, k: int) -> datetime:
        """When shift `k` starts (shift 0 at `start`)."""
        if k == 0:
            return self.start
        if self.unit == "h":
            return self.start + self.nominal * k
        return localize(self.wall + self.nominal * k, self.tz)

    def index(self, instant: datetime) -> int | None:
        """The shift under way at `instant`; None before the rotation starts."""
        if instant < self.start:
            return None
        k = int((instant - self.start) / self.nominal)
        while k > 0 and self.handoff(k) > instant:
            k -= 1
        while self.handoff(k + 1) <= instant:
            k += 1
        return k

    def user(self, k: int) -> str:
        """Who has shift `k`."""
        return self.users[k % len(self.users)]

    def shifts(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime, str]]:
        """Each shift overlapping [start, end), clipped to it."""
        k = self.index(max(start, self.start))
        if k is None or end <= start:
            return
        begin = self.handoff(k)
        while begin < end:
            after = self.handoff(k + 1)
            yield max(begin, start), min(after, end), self.user(k)
            k, begin = k + 1, after


def windows(
    restrictions: Sequence[Restriction], tz: ZoneInfo, start: datetime, end: datetime
) -> list[Interval]:
    """The restriction windows overlapping [start, end), merged, in order (not clipped).

    A window belongs to the day it starts on; one that crosses midnight (22:00 to 06:00)
    ends the next day. Its ends are wall-clock times, made instants by `localize`.
    """
    first = wall_clock(start, tz).date() - timedelta(days=2)
    last = wall_clock(end, tz).date()
    found: list[Interval] = []
    day = first
    while day <= last:
        for restriction in restrictions:
            if DAYS[day.weekday()] in restriction.days:
                opens, closes = _window(day, restriction, tz)
                if opens < closes and closes > start and opens < end:
                    found.append((opens, closes))
        day += timedelta(days=1)
    return merge(found)


def _window(day: date, restriction: Restriction, tz: ZoneInfo) -> Interval:
    begin = datetime.combine(day, time()) + timedelta(minutes=minutes(restriction.from_))
    finish = begin + timedelta(minutes=restriction.length_minutes())
    return localize(begin, tz), localize(finish, tz)


def merge(intervals: list[Interval]) -> list[Interval]:
    """Overlapping and touching intervals joined, in order."""
    out: list[Interval] = []
    for begin, finish in sorted(intervals):
        if out and begin <= out[-1][1]:
            if finish > out[-1][1]:
                out[-1] = (out[-1][0], finish)
        else:
            out.append((begin, finish))
    return out


def intersect(
    shifts: Sequence[tuple[datetime, datetime, str]], allowed: Sequence[Interval]
) -> list[tuple[datetime, datetime, str]]:
    """The parts of the shifts (in order, disjoint) inside the allowed intervals (merged)."""
    out: list[tuple[datetime, datetime, str]] = []
    j = 0
    for begin, finish, user in shifts:
        while j < len(allowed) and allowed[j][1] <= begin:
            j += 1
        i = j
        while i < len(allowed) and allowed[i][0] < finish:
            low, high = max(begin, allowed[i][0]), min(finish, allowed[i][1])
            if low < high:
                out.append((low, high, user))
            i += 1
    return out
