"""What the incident stage reads once per job and keeps in memory, and its locks.

The stage holds the correlation lock for the whole job, so nothing else changes
incidents meanwhile: it reads alert states, open memberships and the open incidents near
its alerts once, works on them in memory, and writes new rows in one batch per table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session

from incidents import timeline
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.index import IncidentLink, MemoryIndex
from incidents.correlation.rule import CorrelationRule
from incidents.db import aggregate_time
from incidents.heartbeats.inject import SOURCE as HEARTBEAT_SOURCE
from incidents.locks import lock_graph
from incidents.models import INCIDENTS, LINKS, Alert, AlertState, Incident, IncidentAlert
from incidents.pipeline.mute import ActiveSilence
from incidents.vocab import IncidentStatus, MemberStatus, TimelineKind


def lock_correlation(session: Session) -> None:
    """Hold the whole graph's correlation lock (upkeep that touches any incident)."""
    lock_graph(session, exclusive=True)


_NODE_MAX = 255


def correlation_service(alert: Alert) -> str:
    """The graph node an alert stands on; without a service label, one per alert name, so
    unrelated unlabelled alerts do not all fall into one incident."""
    return service_node(alert.service, alert.labels, alert.fingerprint)


def service_node(service: str | None, labels: dict[str, str], fingerprint: str) -> str:
    """correlation_service() from an alert's columns."""
    if service:
        return service
    node = f"unknown:{labels.get('alertname', fingerprint)}"
    if len(node) > _NODE_MAX:
        # Service columns hold 255 characters; a digest keeps long names apart.
        node = f"{node[: _NODE_MAX - 17]}#{hashlib.sha1(node.encode()).hexdigest()[:16]}"
    return node


def alert_name(alert: Alert) -> str:
    """The alert's name for people: its alertname label, else its fingerprint."""
    return alert.labels.get("alertname", alert.fingerprint)


def alert_title(alert: Alert) -> str | None:
    """The title an alert gives the incident it names, if it says one: a missed heartbeat's
    alert does ("Alertmanager Watchdog has not arrived for 5 minutes: ...")."""
    if alert.source == HEARTBEAT_SOURCE:
        return alert.annotations.get("summary") or None
    return None


class DbIncidentIndex:
    """The counted alerts of open incidents by service and start time, summarised.

    An incident can hold thousands of alerts on one service. Per (incident, service) and
    window-wide time bucket only the earliest and latest start are read: within one bucket
    (narrower than the window) any alert within the window of a time lies between them,
    so the summary answers "is one within the window" exactly, in bounded rows.
    """

    def __init__(self, session: Session, window: timedelta) -> None:
        self._session = session
        self._window = max(1, int(window.total_seconds()))

    def links_near(
        self, services: Iterable[str], earliest: datetime, latest: datetime
    ) -> list[IncidentLink]:
        """Counted links on any of these services that started between earliest and latest."""
        wanted = sorted(set(services))
        out: list[IncidentLink] = []
        # Bounded IN lists: a storm's neighbourhood can name many thousands of services.
        for at in range(0, len(wanted), 5000):
            out.extend(self._near(wanted[at : at + 5000], earliest, latest))
        return out

    def _near(self, wanted: list[str], earliest: datetime, latest: datetime) -> list[IncidentLink]:
        if self._session.get_bind().dialect.name == "postgresql":
            seconds: Any = func.extract("epoch", LINKS.c.starts_at)
        else:
            seconds = func.cast(func.strftime("%s", LINKS.c.starts_at), Integer)
        bucket = func.floor(seconds / self._window)
        rows = self._session.execute(
            select(
                LINKS.c.incident_id,
                LINKS.c.service,
                func.min(LINKS.c.starts_at),
                func.max(LINKS.c.starts_at),
            )
            .join(INCIDENTS, INCIDENTS.c.id == LINKS.c.incident_id)
            .where(LINKS.c.service.in_(wanted))
            .where(LINKS.c.starts_at >= earliest)
            .where(LINKS.c.starts_at <= latest)
            .where(LINKS.c.status != MemberStatus.MUTED)
            .where(INCIDENTS.c.status == IncidentStatus.OPEN)
            .group_by(LINKS.c.incident_id, LINKS.c.service, bucket)
        )
        out = []
        for incident_id, service, first, last in rows:
            out.append(IncidentLink(incident_id, service, aggregate_time(first)))
            if last != first:
                out.append(IncidentLink(incident_id, service, aggregate_time(last)))
        return out


@dataclass
class NewState:
    """An alert's pipeline state, first seen in this job (inserted when the job ends)."""

    fingerprint: str
    last_status: str
    last_state_at: datetime
    updated_at: datetime
    transitions: list[str] = field(default_factory=list)
    flapping: bool = False
    silenced_by: list[str] = field(default_factory=list)
    inhibited_by: list[str] = field(default_factory=list)


@dataclass
class NewLink:
    """A membership this job adds; shaped like IncidentAlert where the job reads it."""

    row: dict[str, Any]

    @property
    def incident_id(self) -> int:
        """The incident it belongs to (moves when that incident is merged in this job)."""
        return int(self.row["incident_id"])

    @property
    def fingerprint(self) -> str:
        """The alert's fingerprint."""
        return str(self.row["fingerprint"])

    @property
    def service(self) -> str:
        """The service the alert stands on."""
        return str(self.row["service"])

    @property
    def starts_at(self) -> datetime:
        """The alert's start."""
        value: datetime = self.row["starts_at"]
        return value

    @property
    def status(self) -> str:
        """firing, resolved or muted."""
        return str(self.row["status"])

    @status.setter
    def status(self, value: str) -> None:
        self.row["status"] = value

    @property
    def severity(self) -> str:
        """The alert's severity when it joined."""
        return str(self.row["severity"])


Member = IncidentAlert | NewLink
State = AlertState | NewState


@dataclass
class Job:
    """What one job reads once and then works on in memory."""

    session: Session
    graph: ServiceGraph
    rule: CorrelationRule
    now: datetime
    silences: list[ActiveSilence]
    states: dict[str, State]
    open_links: dict[str, Member]
    latest_links: dict[str, Member]
    index: MemoryIndex
    incidents: dict[int, Incident] = field(default_factory=dict)
    # Incidents whose members changed: roots, candidates and title are recomputed once.
    touched: set[int] = field(default_factory=set)
    maybe_resolved: set[int] = field(default_factory=set)
    opened: set[int] = field(default_factory=set)
    inhibit_cache: dict[tuple[Any, ...], list[tuple[str, dict[str, str]]]] = field(
        default_factory=dict
    )
    # Inhibited alerts, placed once every inhibitor of the job has its incident.
    muted: list[tuple[Alert, list[str]]] = field(default_factory=list)
    # Rows this job adds, written in one batch per table when it finishes.
    new_links: list[dict[str, Any]] = field(default_factory=list)
    new_services: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    new_states: list[NewState] = field(default_factory=list)
    # Alerts that joined each incident in this job: one timeline entry per incident.
    joins: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # Held openings whose severity rose: routed again at the new severity.
    rerouted: list[Any] = field(default_factory=list)
    # How long an opening page is held before it may be sent (see `paging`).
    open_hold: timedelta = timedelta(0)
    # Monitoring after all alerts resolved, before resolving by itself (0: at once).
    quiet: timedelta = timedelta(0)
    # Incidents in which a resolved member fired again in this job.
    refired: set[int] = field(default_factory=set)
    storm_budget: int | None = None
    storm_reserved: int = 0  # opening pages this job reserved (PostgreSQL)
    storm_folded: list[int] = field(default_factory=list)

    def incident(self, incident_id: int) -> Incident:
        """The incident, loaded once per job."""
        found = self.incidents.get(incident_id)
        if found is None:
            found = self.session.get(Incident, incident_id)
            if found is None:
                raise LookupError(f"incident {incident_id} vanished while the job held the lock")
            self.incidents[incident_id] = found
        return found


def note(
    job: Job,
    incident_id: int,
    kind: TimelineKind,
    message: str,
    *,
    pages: bool = False,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Queue a timeline entry for the end of the job; return it (it may still change)."""
    row = timeline.entry(incident_id, kind, message, at=at or job.now, pages=pages, data=data)
    job.notes.append(row)
    return row
