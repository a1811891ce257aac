"""The incident stage: mute, detect flapping, correlate into incidents, resolve.

It runs in the pipeline job's transaction. On PostgreSQL it first takes a transaction-
scoped advisory lock, so two workers handling related alerts at the same moment still
open one incident; SQLite serialises writers by itself. Holding the lock also means
nothing else changes incidents while the job runs, so the job reads what it needs once
(alert states, open links, the open incidents near its alerts) and keeps it in memory:
the cost per alert is a bounded graph search and dictionary look-ups, not queries.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, func, insert, select, text, update
from sqlalchemy.orm import Session, make_transient_to_detached

from incidents.config import SEVERITIES, Settings
from incidents.correlation.engine import (
    Decision,
    IncidentLink,
    MemoryIndex,
    correlate,
)
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import current_graph
from incidents.db import utcnow
from incidents.models import (
    ALERTS,
    BY_SERVICE,
    INCIDENTS,
    LINKS,
    STATES,
    TIMELINE,
    Alert,
    AlertState,
    Incident,
    IncidentAlert,
    IncidentService,
    TimelineEntry,
)
from incidents.pipeline import mute
from incidents.pipeline.mute import ActiveSilence, Inhibitor, active_silences, match_labels
from incidents.pipeline.totals import count_events

log = logging.getLogger(__name__)


# Any constant works; it only has to be the same in every process.
CORRELATION_LOCK = 0x1C1DE275


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


_NODE_MAX = 255


def correlation_service(alert: Alert) -> str:
    """The graph node an alert stands on; without a service label, one per alert name, so
    unrelated unlabelled alerts do not all fall into one incident."""
    if alert.service:
        return alert.service
    node = f"unknown:{alert.labels.get('alertname', alert.fingerprint)}"
    if len(node) > _NODE_MAX:
        # Service columns hold 255 characters; a digest keeps long names apart.
        node = f"{node[: _NODE_MAX - 17]}#{hashlib.sha1(node.encode()).hexdigest()[:16]}"
    return node


def lock_correlation(session: Session) -> None:
    """Serialise incident changes across processes (PostgreSQL; SQLite has one writer)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CORRELATION_LOCK})


def _add_stats(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Combine per-service stats: earliest first alert (and its name), worst severity."""
    out = dict(into)
    for service, new in more.items():
        old = out.get(service)
        if old is None:
            out[service] = dict(new)
            continue
        merged = dict(old)
        if datetime.fromisoformat(new["first"]) < datetime.fromisoformat(old["first"]):
            merged["first"], merged["name"] = new["first"], new["name"]
        if _rank(new["worst"]) < _rank(old["worst"]):
            merged["worst"] = new["worst"]
        out[service] = merged
    return out


class DbIncidentIndex:
    """The alerts of open incidents by service and start time, summarised per window.

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
        """Links on any of these services that started between earliest and latest."""
        wanted = list(services)
        if not wanted:
            return []
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
            .where(INCIDENTS.c.status == "open")
            .group_by(LINKS.c.incident_id, LINKS.c.service, bucket)
        )
        out = []
        for incident_id, service, first, last in rows:
            out.append(IncidentLink(incident_id, service, _utc(first)))
            if last != first:
                out.append(IncidentLink(incident_id, service, _utc(last)))
        return out


def _utc(value: datetime | str) -> datetime:
    # Aggregates bypass the column type: SQLite hands back text, without a zone.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _JobIndex(MemoryIndex):
    """Open incidents near the job's alerts, loaded once and kept current as it runs."""

    def merge(self, source: int, target: int) -> None:
        """Re-point the links of a merged incident at the one it merged into."""
        for links in self._by_service.values():
            moved = [key for key in links if key[0] == source]
            for key in moved:
                link = links.pop(key)
                links[(target, link.starts_at)] = IncidentLink(target, link.service, link.starts_at)


@dataclass
class _NewState:
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
class _NewLink:
    """A link this job adds; shaped like IncidentAlert where the job reads it."""

    row: dict[str, Any]

    @property
    def incident_id(self) -> int:
        return int(self.row["incident_id"])

    @property
    def service(self) -> str:
        return str(self.row["service"])

    @property
    def starts_at(self) -> datetime:
        value: datetime = self.row["starts_at"]
        return value

    @property
    def status(self) -> str:
        return str(self.row["status"])

    @status.setter
    def status(self, value: str) -> None:
        self.row["status"] = value


@dataclass
class _Job:
    """What one job reads once and then works on in memory."""

    session: Session
    graph: ServiceGraph
    now: datetime
    silences: list[ActiveSilence]
    states: dict[str, AlertState | _NewState]
    open_links: dict[str, IncidentAlert | _NewLink]
    latest_links: dict[str, IncidentAlert | _NewLink]
    index: _JobIndex
    incidents: dict[int, Incident] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)
    maybe_resolved: set[int] = field(default_factory=set)
    inhibit_cache: dict[tuple[Any, ...], list[tuple[str, dict[str, str]]]] = field(
        default_factory=dict
    )
    # Rows this job adds, written in one batch per table when it finishes.
    new_links: list[dict[str, Any]] = field(default_factory=list)
    new_services: list[dict[str, Any]] = field(default_factory=list)
    new_notes: list[dict[str, Any]] = field(default_factory=list)
    new_states: list[_NewState] = field(default_factory=list)
    # Alerts that joined each incident in this job: one timeline entry per incident.
    joins: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def incident(self, incident_id: int) -> Incident:
        """The incident, loaded once per job."""
        found = self.incidents.get(incident_id)
        if found is None:
            found = self.session.get(Incident, incident_id)
            assert found is not None
            self.incidents[incident_id] = found
        return found


class IncidentStage:
    """Turns stored alerts into incidents."""

    name = "incidents"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.correlation
        self._inhibitor = Inhibitor(self._settings.inhibit_rules)
        self._window = timedelta(seconds=self._settings.window_seconds)

    def __call__(self, session: Session, fingerprints: Sequence[str]) -> None:
        """Process the job's alerts in start-time order."""
        if not fingerprints:
            return
        lock_correlation(session)
        # Read under the lock: another job may have stored a newer state meanwhile.
        fresh = list(
            session.scalars(
                select(Alert)
                .where(ALERTS.c.fingerprint.in_(fingerprints))
                .execution_options(populate_existing=True)
            )
        )
        fresh.sort(key=lambda a: (a.starts_at, a.fingerprint))
        # Nothing else writes incidents while we hold the lock, so the job flushes only
        # when it needs an id, not before every read.
        with session.no_autoflush:
            job = self._load(session, fresh)
            self._inhibitor.warm(
                session,
                [match_labels(a) for a in fresh if a.status == "firing"],
                job.inhibit_cache,
            )
            for alert in fresh:
                self._process(job, alert)
            self._finish(job)

    # -- reading once ------------------------------------------------------------------------

    def _load(self, session: Session, alerts: list[Alert]) -> _Job:
        now = utcnow()
        graph = current_graph(session)
        fingerprints = [a.fingerprint for a in alerts]
        states: dict[str, AlertState | _NewState] = {
            s.fingerprint: s
            for s in session.scalars(
                select(AlertState).where(STATES.c.fingerprint.in_(fingerprints))
            )
        }
        open_links: dict[str, IncidentAlert | _NewLink] = {}
        latest_links: dict[str, IncidentAlert | _NewLink] = {}
        incidents: dict[int, Incident] = {}
        for link, incident in session.execute(
            select(IncidentAlert, Incident)
            .join(INCIDENTS, INCIDENTS.c.id == LINKS.c.incident_id)
            .where(LINKS.c.fingerprint.in_(fingerprints))
            .order_by(LINKS.c.id.desc())
        ).tuples():
            latest_links.setdefault(link.fingerprint, link)
            if incident.status == "open":
                open_links.setdefault(link.fingerprint, link)
            assert incident.id is not None
            incidents[incident.id] = incident
        index = _JobIndex()
        firing = [a for a in alerts if a.status == "firing"]
        if firing:
            near: set[str] = set()
            for service in {correlation_service(a) for a in firing}:
                near.update(graph.within_hops(service, self._settings.hops))
            earliest = min(a.starts_at for a in firing) - self._window
            latest = max(a.starts_at for a in firing) + self._window
            nearby = DbIncidentIndex(session, self._window).links_near(near, earliest, latest)
            for near_link in nearby:
                index.add_link(near_link)
            missing = {near.incident_id for near in nearby} - set(incidents)
            if missing:
                for incident in session.scalars(
                    select(Incident).where(INCIDENTS.c.id.in_(sorted(missing)))
                ):
                    assert incident.id is not None
                    incidents[incident.id] = incident
        return _Job(
            session=session,
            graph=graph,
            now=now,
            silences=active_silences(session, now),
            states=states,
            open_links=open_links,
            latest_links=latest_links,
            index=index,
            incidents=incidents,
        )

    # -- one alert --------------------------------------------------------------------------

    def _process(self, job: _Job, alert: Alert) -> None:
        state = job.states.get(alert.fingerprint)
        if state is None:
            state = _NewState(
                fingerprint=alert.fingerprint,
                last_status=alert.status,
                last_state_at=alert.state_at,
                updated_at=job.now,
            )
            job.new_states.append(state)
            job.states[alert.fingerprint] = state
        elif (state.last_status, state.last_state_at) != (alert.status, alert.state_at):
            if state.last_status != alert.status:
                self._record_transition(job, state, alert)
            state.last_status = alert.status
            state.last_state_at = alert.state_at
            state.updated_at = job.now

        if alert.status == "resolved":
            if state.silenced_by:
                state.silenced_by = []
            if state.inhibited_by:
                state.inhibited_by = []
            self._resolve(job, alert, state)
            return
        if mute.takes_no_part(alert, state):
            self._resolve(job, alert, state)  # leaves an incident it opened before it was ignored
            return

        open_link = job.open_links.get(alert.fingerprint)
        if open_link is not None:
            if open_link.status != "firing":
                open_link.status = "firing"  # a flapping alert fired again in its incident
            return

        labels = match_labels(alert)
        silenced = sorted(s.id for s in job.silences if s.covers(alert, labels))
        inhibited = [] if silenced else self._inhibitors(job, alert, labels)
        if silenced != state.silenced_by:
            state.silenced_by = silenced
        if inhibited != state.inhibited_by:
            state.inhibited_by = inhibited
        if silenced or inhibited:
            return
        if self._reopen(job, alert, state):
            return

        service = correlation_service(alert)
        decision = correlate(
            service,
            alert.starts_at,
            job.graph,
            job.index,
            hops=self._settings.hops,
            window=self._window,
        )
        self._apply(job, alert, service, decision)

    def _inhibitors(self, job: _Job, alert: Alert, labels: dict[str, str]) -> list[str]:
        return self._inhibitor.inhibitors(job.session, alert, labels, job.inhibit_cache)

    def _record_transition(self, job: _Job, state: AlertState | _NewState, alert: Alert) -> None:
        window_start = alert.state_at - timedelta(seconds=self._settings.flap_window_seconds)
        recent = [t for t in state.transitions if datetime.fromisoformat(t) >= window_start]
        recent.append(alert.state_at.isoformat())
        state.transitions = recent[-50:]
        flapping = len(recent) > self._settings.flap_changes
        if flapping and not state.flapping:
            state.flapping = True
            link = job.latest_links.get(alert.fingerprint)
            if link is None:
                return
            incident = job.incident(link.incident_id)
            if incident.flapping:
                return
            incident.flapping = True
            self._note(
                job,
                link.incident_id,
                "flapping",
                f"alert {alert.labels.get('alertname', alert.fingerprint)} is flapping: "
                f"{len(recent)} state changes within "
                f"{int(self._settings.flap_window_seconds // 60)} minutes; "
                "its further changes will not page",
                data={"fingerprint": alert.fingerprint, "changes": len(recent)},
            )
        elif not flapping and state.flapping:
            state.flapping = False

    def _reopen(self, job: _Job, alert: Alert, state: AlertState | _NewState) -> bool:
        """An alert firing again soon after its incident resolved reopens that incident
        instead of opening (and paging) a new one; once it is flapping, silently."""
        link = job.latest_links.get(alert.fingerprint)
        if link is None:
            return False
        incident = job.incident(link.incident_id)
        if incident.status != "resolved" or incident.resolved_at is None:
            return False
        quiet = (alert.starts_at - incident.resolved_at).total_seconds()
        if quiet > self._settings.flap_window_seconds:
            return False
        assert incident.id is not None
        incident.status = "open"
        incident.resolved_at = None
        incident.updated_at = job.now
        incident.last_alert_at = max(incident.last_alert_at, alert.starts_at)
        link.status = "firing"
        job.open_links[alert.fingerprint] = link
        job.session.execute(
            update(BY_SERVICE).where(BY_SERVICE.c.incident_id == incident.id).values(open=True)
        )
        job.index.add_link(IncidentLink(incident.id, link.service, link.starts_at))
        name = alert.labels.get("alertname", alert.fingerprint)
        self._note(
            job,
            incident.id,
            "reopened",
            f"alert {name} fired again {int(quiet)} s after the incident resolved",
            pages=not state.flapping,
            data={"fingerprint": alert.fingerprint},
        )
        return True

    # -- joining and opening -------------------------------------------------------------------

    def _apply(self, job: _Job, alert: Alert, service: str, decision: Decision) -> None:
        name = alert.labels.get("alertname", alert.fingerprint)
        if decision.opens_incident:
            values: dict[str, Any] = {
                "status": "open",
                "severity": alert.severity,
                "title": f"{name} on {service}",
                "opened_at": alert.starts_at,
                "updated_at": job.now,
                "first_alert_at": alert.starts_at,
                "last_alert_at": alert.starts_at,
                "services": [],
                "root_cause_candidates": [],
                "blast_radius": [],
                "service_stats": {},
                "flapping": False,
                "merged_into": None,
                "resolved_at": None,
            }
            # Insert just this row for its id, rather than flushing everything pending.
            new_id = job.session.execute(
                insert(INCIDENTS).values(**values).returning(INCIDENTS.c.id)
            ).scalar_one()
            incident = Incident(id=new_id, **values)
            make_transient_to_detached(incident)
            job.session.add(incident)
            assert incident.id is not None
            job.incidents[incident.id] = incident
            because: dict[str, Any] = {"reason": "opened the incident", "hops": None}
            self._link(job, incident, alert, service, because)
            self._note(
                job,
                incident.id,
                "opened",
                f"incident opened by alert {name} on {service} ({alert.severity})",
                pages=True,
                data={"severity": incident.severity, "fingerprint": alert.fingerprint},
            )
            return
        primary = decision.matches[0]
        target = job.incident(primary.incident.id)
        assert target.id is not None
        before = target.severity
        for other in decision.matches[1:]:
            self._merge(job, target, other.incident.id, alert)
        because = primary.explanation(service)
        self._link(job, target, alert, service, because)
        job.joins.setdefault(target.id, []).append(
            {"fingerprint": alert.fingerprint, "name": name, "service": service, **because}
        )
        if _rank(target.severity) < _rank(before):
            self._note(
                job,
                target.id,
                "severity_raised",
                f"severity raised from {before} to {target.severity}",
                pages=True,
                data={"from": before, "to": target.severity},
            )

    def _link(
        self,
        job: _Job,
        incident: Incident,
        alert: Alert,
        service: str,
        because: dict[str, Any],
    ) -> None:
        assert incident.id is not None
        link = _NewLink(
            {
                "incident_id": incident.id,
                "fingerprint": alert.fingerprint,
                "service": service,
                "severity": alert.severity,
                "starts_at": alert.starts_at,
                "status": "firing",
                "joined_at": job.now,
                "joined_because": because,
            }
        )
        job.new_links.append(link.row)
        job.open_links[alert.fingerprint] = link
        job.latest_links[alert.fingerprint] = link
        job.index.add_link(IncidentLink(incident.id, service, alert.starts_at))
        if service not in incident.services:
            job.new_services.append({"incident_id": incident.id, "service": service, "open": True})
            incident.services = sorted({*incident.services, service})
        incident.first_alert_at = min(incident.first_alert_at, alert.starts_at)
        incident.last_alert_at = max(incident.last_alert_at, alert.starts_at)
        incident.opened_at = min(incident.opened_at, alert.starts_at)
        incident.updated_at = job.now
        if _rank(alert.severity) < _rank(incident.severity):
            incident.severity = alert.severity
        name = alert.labels.get("alertname", "alert")
        stats = _add_stats(
            incident.service_stats,
            {
                service: {
                    "first": alert.starts_at.isoformat(),
                    "worst": alert.severity,
                    "name": name,
                }
            },
        )
        # Root cause, blast radius and title depend only on these stats: recompute them
        # (once, when the job ends) only if this alert changed them.
        if stats != incident.service_stats:
            incident.service_stats = stats
            job.touched.add(incident.id)

    def _merge(self, job: _Job, target: Incident, source_id: int, alert: Alert) -> None:
        source = job.incident(source_id)
        if source.status != "open" or source.id == target.id:
            return
        assert target.id is not None
        job.session.flush()  # links added in this job must move too
        job.session.execute(
            update(LINKS)
            .where(LINKS.c.incident_id == source_id)
            .values(incident_id=target.id)
            .execution_options(synchronize_session="fetch")
        )
        for service in source.services:
            if service not in target.services:
                job.session.add(IncidentService(incident_id=target.id, service=service, open=True))
        job.session.execute(
            update(BY_SERVICE).where(BY_SERVICE.c.incident_id == source_id).values(open=False)
        )
        job.index.merge(source_id, target.id)
        target.services = sorted({*target.services, *source.services})
        target.first_alert_at = min(target.first_alert_at, source.first_alert_at)
        target.last_alert_at = max(target.last_alert_at, source.last_alert_at)
        target.opened_at = min(target.opened_at, source.opened_at)
        if _rank(source.severity) < _rank(target.severity):
            target.severity = source.severity
        target.flapping = target.flapping or source.flapping
        target.service_stats = _add_stats(target.service_stats, source.service_stats)
        source.status = "merged"
        source.merged_into = target.id
        source.updated_at = job.now
        job.touched.add(target.id)
        job.touched.discard(source_id)
        reason = f"alert {alert.labels.get('alertname', alert.fingerprint)} links both"
        self._note(
            job,
            source_id,
            "merged",
            f"merged into incident {target.id}: {reason}",
            data={"into": target.id},
        )
        self._note(
            job,
            target.id,
            "merged",
            f"incident {source_id} merged into this one: {reason}",
            data={"from": source_id},
        )

    # -- resolving -------------------------------------------------------------------------

    def _resolve(self, job: _Job, alert: Alert, state: AlertState | _NewState) -> None:
        link = job.open_links.get(alert.fingerprint)
        if link is None or link.status == "resolved":
            return
        link.status = "resolved"
        if state.flapping:
            return  # a flapping alert's resolve does not close (and re-page) its incident
        job.maybe_resolved.add(link.incident_id)

    def settle_flapping(self, session: Session, now: datetime) -> list[int]:
        """Resolve flapping incidents whose alerts have all stayed resolved for a flap window."""
        quiet_since = now - timedelta(seconds=self._settings.flap_window_seconds)
        settled: list[int] = []
        candidates = session.scalars(
            select(Incident).where(INCIDENTS.c.status == "open").where(INCIDENTS.c.flapping)
        ).all()
        for incident in candidates:
            assert incident.id is not None
            links = session.scalars(
                select(IncidentAlert).where(LINKS.c.incident_id == incident.id)
            ).all()
            if any(link.status == "firing" for link in links):
                continue
            states = [session.get(AlertState, link.fingerprint) for link in links]
            if any(s is not None and s.last_state_at > quiet_since for s in states):
                continue
            for state in states:
                if state is not None:
                    state.flapping = False
            ended = session.scalar(
                select(func.max(ALERTS.c.ends_at)).where(
                    ALERTS.c.fingerprint.in_([link.fingerprint for link in links])
                )
            )
            self._close(session, incident, ended or now, now, "all alerts resolved and quiet")
            settled.append(incident.id)
        return settled

    def _close(
        self, session: Session, incident: Incident, ended: datetime, now: datetime, why: str
    ) -> None:
        assert incident.id is not None
        incident.status = "resolved"
        incident.resolved_at = ended
        incident.updated_at = now
        session.execute(
            update(BY_SERVICE).where(BY_SERVICE.c.incident_id == incident.id).values(open=False)
        )
        count_events(session, ["resolved"])
        session.add(
            TimelineEntry(
                incident_id=incident.id,
                at=now,
                kind="resolved",
                actor="system",
                message=why,
                pages=True,
                data={},
            )
        )

    # -- once per job ----------------------------------------------------------------------

    def _write_rows(self, job: _Job) -> None:
        session = job.session
        session.flush()
        if job.new_links:
            session.execute(insert(LINKS), job.new_links)
            job.new_links = []
        if job.new_services:
            session.execute(insert(BY_SERVICE), job.new_services)
            job.new_services = []
        if job.new_states:
            session.execute(
                insert(STATES),
                [
                    {
                        "fingerprint": st.fingerprint,
                        "last_status": st.last_status,
                        "last_state_at": st.last_state_at,
                        "transitions": st.transitions,
                        "flapping": st.flapping,
                        "silenced_by": st.silenced_by,
                        "inhibited_by": st.inhibited_by,
                        "updated_at": st.updated_at,
                    }
                    for st in job.new_states
                ],
            )
            job.new_states = []

    def _finish(self, job: _Job) -> None:
        """Close incidents whose alerts all resolved, then recompute what joins changed."""
        self._write_rows(job)
        for incident_id in sorted(job.maybe_resolved):
            incident = job.incident(incident_id)
            if incident.status != "open":
                continue
            firing, ended = job.session.execute(
                select(
                    func.count().filter(LINKS.c.status == "firing"),
                    func.max(ALERTS.c.ends_at),
                )
                .select_from(LINKS)
                .join(ALERTS, ALERTS.c.fingerprint == LINKS.c.fingerprint)
                .where(LINKS.c.incident_id == incident_id)
            ).one()
            if not firing:
                self._close(job.session, incident, ended or job.now, job.now, "all alerts resolved")
        self._refresh(job)
        self._note_joins(job)
        if job.new_notes:
            count_events(job.session, (note["kind"] for note in job.new_notes))
            job.session.execute(insert(TIMELINE), job.new_notes)
            job.new_notes = []

    def _refresh(self, job: _Job) -> None:
        """Root cause, blast radius and title of every incident this job added alerts to."""
        for incident_id in sorted(job.touched):
            incident = job.incident(incident_id)
            if incident.status != "open":
                continue
            stats = incident.service_stats
            first_seen = {s: datetime.fromisoformat(v["first"]) for s, v in stats.items()}
            worst = {s: str(v["worst"]) for s, v in stats.items()}
            ranked = job.graph.rank_root_causes(sorted(first_seen), first_seen, worst)
            previous = list(incident.root_cause_candidates)
            incident.root_cause_candidates = ranked
            root = ranked[0] if ranked else "unknown"
            incident.blast_radius = job.graph.blast_radius(root) if ranked else []
            others = len(incident.services) - 1
            title = f"{stats.get(root, {}).get('name', 'alert')} on {root}"
            if others > 0:
                title += f" (+{others} affected service{'s' if others > 1 else ''})"
            incident.title = title
            if previous and ranked and previous[0] != ranked[0]:
                self._note(
                    job,
                    incident_id,
                    "root_cause_changed",
                    f"likely root cause is now {ranked[0]} (was {previous[0]})",
                    data={"from": previous[0], "to": ranked[0]},
                )

    def _note_joins(self, job: _Job) -> None:
        """One timeline entry per incident for the alerts that joined it in this job: a
        storm of a thousand symptoms reads as one line, not a thousand."""
        for incident_id, joined in job.joins.items():
            if len(joined) == 1:
                one = joined[0]
                message = f"alert {one['name']} on {one['service']} joined: {one['reason']}"
                data: dict[str, Any] = {k: v for k, v in one.items() if k != "name"}
            else:
                services = sorted({j["service"] for j in joined})
                shown = ", ".join(services[:5]) + (" ..." if len(services) > 5 else "")
                message = f"{len(joined)} alerts joined, on {shown}"
                data = {
                    "count": len(joined),
                    "services": services,
                    "fingerprints": [j["fingerprint"] for j in joined][:100],
                }
            self._note(job, incident_id, "alert_joined", message, data=data)

    # -- timeline ----------------------------------------------------------------------------

    def _note(
        self,
        job: _Job,
        incident_id: int,
        kind: str,
        message: str,
        *,
        pages: bool = False,
        data: dict[str, Any] | None = None,
    ) -> None:
        job.new_notes.append(
            {
                "incident_id": incident_id,
                "at": job.now,
                "kind": kind,
                "actor": "system",
                "message": message,
                "pages": pages,
                "data": data or {},
            }
        )
