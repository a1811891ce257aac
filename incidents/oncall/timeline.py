"""Who is on call: a schedule's layers and overrides merged into one timeline.

At any instant an override beats every layer (a later override beats an earlier one),
and among the layers the highest one with someone on call wins (PagerDuty's rule). A
time nobody covers is a gap. `Plan.at` answers for one instant through the same code
that builds the timeline, so the two always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Final

from incidents.oncall.documents import Restriction, Schedule, resolve
from incidents.oncall.fields import zone
from incidents.oncall.rotation import Rotation, intersect, windows

# The longest range one timeline covers (an API bound: hourly rotations make many shifts).
MAX_RANGE: Final = timedelta(days=90)
_TICK: Final = timedelta(microseconds=1)


@dataclass(frozen=True)
class Slot:
    """A piece of the final timeline: one person from one source, or a gap."""

    start: datetime
    end: datetime
    user: str | None
    layer: int | None = None
    override_id: str | None = None

    @property
    def gap(self) -> bool:
        """True when nobody is on call."""
        return self.user is None

    @property
    def source(self) -> str | None:
        """`layer N`, `override`, or None for a gap."""
        if self.user is None:
            return None
        return "override" if self.layer is None else f"layer {self.layer}"

    def same_as(self, other: Slot) -> bool:
        """Same person from the same source (adjacent such slots are one shift)."""
        return (self.user, self.layer, self.override_id) == (
            other.user,
            other.layer,
            other.override_id,
        )


@dataclass(frozen=True)
class _Override:
    start: datetime
    end: datetime
    user: str
    id: str | None


class Plan:
    """A schedule compiled for computing: rotations, restrictions and overrides as instants."""

    def __init__(self, schedule: Schedule) -> None:
        self.name = schedule.name
        self.tz = zone(schedule.time_zone)
        self.layers: list[tuple[Rotation, tuple[Restriction, ...]]] = [
            (Rotation.of(layer, self.tz), tuple(layer.restrictions)) for layer in schedule.layers
        ]
        self.overrides = [
            _Override(
                resolve(o.from_, schedule.time_zone),
                resolve(o.to, schedule.time_zone),
                o.user,
                o.id,
            )
            for o in schedule.overrides
        ]

    def at(self, instant: datetime) -> Slot:
        """Who is on call at `instant` (a slot from `instant`, one microsecond long)."""
        return self.timeline(instant, instant + _TICK)[0]

    def current(self, instant: datetime, horizon: timedelta = timedelta(days=31)) -> Slot:
        """The slot under way at `instant`, from `instant` to its end (within `horizon`)."""
        slots = self.timeline(instant, instant + horizon)
        return slots[0]

    def gaps(self, start: datetime, end: datetime) -> list[Slot]:
        """The times within [start, end) when nobody is on call."""
        return [slot for slot in self.timeline(start, end) if slot.gap]

    def timeline(self, start: datetime, end: datetime) -> list[Slot]:
        """Slots covering [start, end) exactly, in order, none overlapping; adjacent slots
        differ in person or source. Gaps are slots whose user is None."""
        if end <= start:
            return []
        per_layer = []
        for rotation, restrictions in self.layers:
            shifts = list(rotation.shifts(start, end))
            if restrictions:
                shifts = intersect(shifts, windows(restrictions, self.tz, start, end))
            per_layer.append(shifts)
        overrides = [
            replace(o, start=max(o.start, start), end=min(o.end, end))
            for o in self.overrides
            if o.start < end and o.end > start
        ]
        points = {start, end}
        for shifts in per_layer:
            for begin, finish, _ in shifts:
                points.update((begin, finish))
        for override in overrides:
            points.update((override.start, override.end))
        cursor = [0] * len(per_layer)
        slots: list[Slot] = []
        for begin, finish in pairwise(sorted(p for p in points if start <= p <= end)):
            slot = self._winner(begin, finish, per_layer, cursor, overrides)
            if slots and slots[-1].end == begin and slots[-1].same_as(slot):
                slots[-1] = replace(slots[-1], end=finish)
            else:
                slots.append(slot)
        return slots

    @staticmethod
    def _winner(
        begin: datetime,
        finish: datetime,
        per_layer: list[list[tuple[datetime, datetime, str]]],
        cursor: list[int],
        overrides: list[_Override],
    ) -> Slot:
        for override in reversed(overrides):
            if override.start <= begin < override.end:
                return Slot(begin, finish, override.user, None, override.id)
        for number in reversed(range(len(per_layer))):
            shifts = per_layer[number]
            position = cursor[number]
            while position < len(shifts) and shifts[position][1] <= begin:
                position += 1
            cursor[number] = position
            if position < len(shifts) and shifts[position][0] <= begin:
                return Slot(begin, finish, shifts[position][2], number)
        return Slot(begin, finish, None)
