"""correlate(): which open incidents a new alert belongs to.

Cost per alert: one bounded neighbourhood search in the graph (`hops` edges either way)
and one index look-up per neighbour. Nothing compares the alert with every other alert
or every open incident.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from incidents.correlation.graph import ServiceGraph


@dataclass(slots=True)
class OpenIncident:
    """An open incident: its id, and (for building an index) its services and time span."""

    id: int
    services: set[str] = field(default_factory=set)
    first_alert_at: datetime | None = None
    last_alert_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IncidentLink:
    """One alert of an open incident: which service it is on and when it started."""

    incident_id: int
    service: str
    starts_at: datetime


class IncidentIndex(Protocol):
    """The alerts of open incidents, looked up by service and start time."""

    def links_near(
        self, services: Iterable[str], earliest: datetime, latest: datetime
    ) -> list[IncidentLink]:
        """Links on any of these services that started between earliest and latest."""
        ...


@dataclass(slots=True)
class Match:
    """An open incident the alert may join, and why."""

    incident: OpenIncident
    hops: int
    via: str
    gap_seconds: float

    def explanation(self, service: str) -> dict[str, Any]:
        """The `joined_because` record kept on the incident."""
        if self.hops == 0:
            reason = f"same service as the incident ({service})"
        else:
            reason = f"{service} is {self.hops} hop(s) from {self.via} in the service graph"
        return {
            "reason": reason,
            "hops": self.hops,
            "via": self.via,
            "gap_seconds": round(self.gap_seconds, 3),
        }


@dataclass(slots=True)
class Decision:
    """Join `matches[0]` (merging the rest into it), or open a new incident if empty."""

    matches: list[Match] = field(default_factory=list)

    @property
    def opens_incident(self) -> bool:
        """True when nothing open is close enough."""
        return not self.matches


def correlate(
    service: str,
    starts_at: datetime,
    graph: ServiceGraph,
    index: IncidentIndex,
    *,
    hops: int,
    window: timedelta,
) -> Decision:
    """Find every open incident with an alert within `hops` and `window` of this one.

    Two alerts are related when their services are at most `hops` edges apart (either
    direction) and their start times at most `window` apart; an incident is a connected
    group of related alerts, and an alert that relates to two open incidents merges them.
    Because the relation is between alerts, the grouping of a burst does not depend on
    the order in which its alerts are processed.
    """
    near = graph.within_hops(service, hops)
    best: dict[int, tuple[int, float, str]] = {}
    for link in index.links_near(near, starts_at - window, starts_at + window):
        distance = near.get(link.service)
        if distance is None:
            continue
        key = (distance, abs((starts_at - link.starts_at).total_seconds()), link.service)
        current = best.get(link.incident_id)
        if current is None or key < current:
            best[link.incident_id] = key
    # The oldest incident survives a merge, so ids that people have seen stay valid.
    matches = [
        Match(OpenIncident(incident_id), distance, via, gap)
        for incident_id, (distance, gap, via) in sorted(best.items())
    ]
    return Decision(matches)


class MemoryIndex:
    """An in-memory IncidentIndex (benchmarks and pure tests)."""

    def __init__(self) -> None:
        # Per service, each (incident, start time) once: a storm's alerts share starts.
        self._by_service: dict[str, dict[tuple[int, datetime], IncidentLink]] = {}

    def add_link(self, link: IncidentLink) -> None:
        """Index one alert of an incident."""
        self._by_service.setdefault(link.service, {})[(link.incident_id, link.starts_at)] = link

    def add(self, incident: OpenIncident) -> None:
        """Index an incident as alerts on each of its services at its first and last time."""
        assert incident.first_alert_at is not None
        times = {incident.first_alert_at, incident.last_alert_at or incident.first_alert_at}
        for service in incident.services:
            for at in sorted(times):
                self.add_link(IncidentLink(incident.id, service, at))

    def links_near(
        self, services: Iterable[str], earliest: datetime, latest: datetime
    ) -> list[IncidentLink]:
        """Links on any of these services that started between earliest and latest."""
        found = []
        for service in services:
            bucket = self._by_service.get(service)
            if not bucket:
                continue
            for link in bucket.values():
                if earliest <= link.starts_at <= latest:
                    found.append(link)
        return found
