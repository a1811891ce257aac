"""Where the alerts of open incidents are: looked up by service and start time.

Correlation asks one question of the incidents it already has: which counted alerts of
open incidents stand on these (nearby) services and started within the window of a new
alert. The pipeline answers it from PostgreSQL/SQLite; benchmarks and pure tests from
memory, through the same protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class IncidentLink:
    """One counted alert of an open incident: which service it is on and when it started."""

    incident_id: int
    service: str
    starts_at: datetime


class IncidentIndex(Protocol):
    """The counted alerts of open incidents, looked up by service and start time."""

    def links_near(
        self, services: Iterable[str], earliest: datetime, latest: datetime
    ) -> list[IncidentLink]:
        """Links on any of these services that started between earliest and latest."""
        ...


class MemoryIndex:
    """An in-memory IncidentIndex; the pipeline keeps one per job, current as it runs."""

    def __init__(self) -> None:
        # Per service, each (incident, start time) once: a storm's alerts share starts.
        self._by_service: dict[str, dict[tuple[int, datetime], IncidentLink]] = {}

    def add_link(self, link: IncidentLink) -> None:
        """Index one alert of an incident."""
        self._by_service.setdefault(link.service, {})[(link.incident_id, link.starts_at)] = link

    def merge(self, source: int, target: int) -> None:
        """Re-point the links of a merged incident at the one it merged into."""
        for links in self._by_service.values():
            moved = [key for key in links if key[0] == source]
            for key in moved:
                link = links.pop(key)
                links[(target, link.starts_at)] = IncidentLink(target, link.service, link.starts_at)

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
