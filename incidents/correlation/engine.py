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
    """What correlation needs to know of an open incident."""

    id: int
    services: set[str]
    first_alert_at: datetime
    last_alert_at: datetime


class IncidentIndex(Protocol):
    """Open incidents, looked up by the services they touch."""

    def touching(self, services: Iterable[str]) -> list[OpenIncident]:
        """Open incidents that include any of these services."""
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
    """Find every open incident within `hops` of `service` and `window` of `starts_at`.

    The time test uses the incident's span of alert start times widened by the window,
    so an alert that arrives late but started inside a burst still joins it; the result
    does not depend on the order in which a burst's alerts are processed.
    """
    near = graph.within_hops(service, hops)
    matches: list[Match] = []
    for incident in index.touching(near):
        if not (incident.first_alert_at - window <= starts_at <= incident.last_alert_at + window):
            continue
        distance, via = min((near[s], s) for s in incident.services if s in near)
        if starts_at > incident.last_alert_at:
            gap = (starts_at - incident.last_alert_at).total_seconds()
        elif starts_at < incident.first_alert_at:
            gap = (incident.first_alert_at - starts_at).total_seconds()
        else:
            gap = 0.0
        matches.append(Match(incident, distance, via, gap))
    # The oldest incident survives a merge, so ids that people have seen stay valid.
    matches.sort(key=lambda m: m.incident.id)
    return Decision(matches)


class MemoryIndex:
    """An in-memory IncidentIndex (benchmarks and pure tests)."""

    def __init__(self) -> None:
        self._by_service: dict[str, dict[int, OpenIncident]] = {}

    def add(self, incident: OpenIncident) -> None:
        """Index an incident under each of its services."""
        for service in incident.services:
            self._by_service.setdefault(service, {})[incident.id] = incident

    def touching(self, services: Iterable[str]) -> list[OpenIncident]:
        """Open incidents that include any of these services."""
        found: dict[int, OpenIncident] = {}
        for service in services:
            bucket = self._by_service.get(service)
            if bucket:
                found.update(bucket)
        return list(found.values())
