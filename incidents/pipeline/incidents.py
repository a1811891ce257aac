"""The incident stage: mute, detect flapping, correlate into incidents, resolve.

It runs in the pipeline job's transaction. On PostgreSQL it first takes a transaction-
scoped advisory lock, so two workers handling related alerts at the same moment still
open one incident; the step is short (bounded graph searches and indexed look-ups), so
serialising it costs little. SQLite serialises writers by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from incidents.config import SEVERITIES, Settings
from incidents.correlation.engine import Decision, IncidentLink, correlate
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import current_graph
from incidents.db import utcnow
from incidents.models import (
    Alert,
    AlertState,
    Incident,
    IncidentAlert,
    IncidentService,
    TimelineEntry,
)
from incidents.pipeline.mute import Inhibitor, active_silences, match_labels

log = logging.getLogger(__name__)

INCIDENTS = Incident.__table__  # type: ignore[attr-defined]
ALERTS = Alert.__table__  # type: ignore[attr-defined]
LINKS = IncidentAlert.__table__  # type: ignore[attr-defined]
BY_SERVICE = IncidentService.__table__  # type: ignore[attr-defined]

# Any constant works; it only has to be the same in every process.
CORRELATION_LOCK = 0x1C1DE275


def correlation_service(alert: Alert) -> str:
    """The graph node an alert stands on; without a service label, one per alert name, so
    unrelated unlabelled alerts do not all fall into one incident."""
    if alert.service:
        return alert.service
    return f"unknown:{alert.labels.get('alertname', alert.fingerprint)}"


def lock_correlation(session: Session) -> None:
    """Serialise incident changes across processes (PostgreSQL; SQLite has one writer)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CORRELATION_LOCK})


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


class DbIncidentIndex:
    """The alerts of open incidents, read from `incident_alerts` by service and start time."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def links_near(
        self, services: Iterable[str], earliest: datetime, latest: datetime
    ) -> list[IncidentLink]:
        """Links on any of these services that started between earliest and latest."""
        wanted = list(services)
        if not wanted:
            return []
        rows = self._session.execute(
            select(LINKS.c.incident_id, LINKS.c.service, LINKS.c.starts_at)
            .join(INCIDENTS, INCIDENTS.c.id == LINKS.c.incident_id)
            .where(LINKS.c.service.in_(wanted))
            .where(LINKS.c.starts_at >= earliest)
            .where(LINKS.c.starts_at <= latest)
            .where(INCIDENTS.c.status == "open")
        )
        return [IncidentLink(i, s, t) for i, s, t in rows]


class IncidentStage:
    """Turns stored alerts into incidents."""

    name = "incidents"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.correlation
        self._inhibitor = Inhibitor(self._settings.inhibit_rules)

    def __call__(self, session: Session, alerts: Sequence[Alert]) -> None:
        """Process the job's alerts in start-time order."""
        if not alerts:
            return
        lock_correlation(session)
        now = utcnow()
        graph = current_graph(session)
        silences = active_silences(session, now)
        for alert in sorted(alerts, key=lambda a: (a.starts_at, a.fingerprint)):
            session.refresh(alert)  # the lock may have waited for a newer state
            self._process(session, graph, silences, alert, now)

    # -- one alert --------------------------------------------------------------------------

    def _process(
        self,
        session: Session,
        graph: ServiceGraph,
        silences: list[Any],
        alert: Alert,
        now: datetime,
    ) -> None:
        state = session.get(AlertState, alert.fingerprint)
        if state is None:
            state = AlertState(
                fingerprint=alert.fingerprint,
                last_status=alert.status,
                last_state_at=alert.state_at,
                transitions=[],
                updated_at=now,
            )
            session.add(state)
        elif (state.last_status, state.last_state_at) != (alert.status, alert.state_at):
            if state.last_status != alert.status:
                self._record_transition(session, state, alert, now)
            state.last_status = alert.status
            state.last_state_at = alert.state_at
            state.updated_at = now

        if alert.status == "resolved":
            state.silenced_by = []
            state.inhibited_by = []
            self._resolve(session, alert, state, now)
            return

        open_link = self._open_link(session, alert.fingerprint)
        if open_link is not None:
            if open_link.status != "firing":
                open_link.status = "firing"  # a flapping alert fired again in its incident
            return

        labels = match_labels(alert)
        silenced = sorted(s.id for s in silences if s.covers(alert, labels))
        inhibited = [] if silenced else self._inhibitor.inhibitors(session, alert, labels)
        if silenced != state.silenced_by:
            state.silenced_by = silenced
        if inhibited != state.inhibited_by:
            state.inhibited_by = inhibited
        if silenced or inhibited:
            return
        if self._reopen(session, alert, state, now):
            return

        service = correlation_service(alert)
        decision = correlate(
            service,
            alert.starts_at,
            graph,
            DbIncidentIndex(session),
            hops=self._settings.hops,
            window=timedelta(seconds=self._settings.window_seconds),
        )
        self._apply(session, graph, alert, service, decision, now)

    def _record_transition(
        self, session: Session, state: AlertState, alert: Alert, now: datetime
    ) -> None:
        window_start = alert.state_at - timedelta(seconds=self._settings.flap_window_seconds)
        recent = [t for t in state.transitions if datetime.fromisoformat(t) >= window_start]
        recent.append(alert.state_at.isoformat())
        state.transitions = recent[-50:]
        flapping = len(recent) > self._settings.flap_changes
        if flapping and not state.flapping:
            state.flapping = True
            link = self._latest_link(session, alert.fingerprint)
            if link is not None:
                incident = session.get(Incident, link.incident_id)
                if incident is not None and not incident.flapping:
                    incident.flapping = True
                    self._note(
                        session,
                        incident.id,
                        now,
                        "flapping",
                        f"alert {alert.labels.get('alertname', alert.fingerprint)} is flapping: "
                        f"{len(recent)} state changes within "
                        f"{int(self._settings.flap_window_seconds // 60)} minutes; "
                        "its further changes will not page",
                        data={"fingerprint": alert.fingerprint, "changes": len(recent)},
                    )
        elif not flapping and state.flapping:
            state.flapping = False

    def _reopen(self, session: Session, alert: Alert, state: AlertState, now: datetime) -> bool:
        """An alert firing again soon after its incident resolved reopens that incident
        instead of opening (and paging) a new one; once it is flapping, silently."""
        link = self._latest_link(session, alert.fingerprint)
        if link is None:
            return False
        incident = session.get(Incident, link.incident_id)
        if incident is None or incident.status != "resolved" or incident.resolved_at is None:
            return False
        quiet = (alert.starts_at - incident.resolved_at).total_seconds()
        if quiet > self._settings.flap_window_seconds:
            return False
        assert incident.id is not None
        incident.status = "open"
        incident.resolved_at = None
        incident.updated_at = now
        incident.last_alert_at = max(incident.last_alert_at, alert.starts_at)
        link.status = "firing"
        session.execute(
            update(BY_SERVICE).where(BY_SERVICE.c.incident_id == incident.id).values(open=True)
        )
        name = alert.labels.get("alertname", alert.fingerprint)
        self._note(
            session,
            incident.id,
            now,
            "reopened",
            f"alert {name} fired again {int(quiet)} s after the incident resolved",
            pages=not state.flapping,
            data={"fingerprint": alert.fingerprint},
        )
        return True

    def _open_link(self, session: Session, fingerprint: str) -> IncidentAlert | None:
        return session.scalars(
            select(IncidentAlert)
            .join(INCIDENTS, INCIDENTS.c.id == LINKS.c.incident_id)
            .where(LINKS.c.fingerprint == fingerprint)
            .where(INCIDENTS.c.status == "open")
            .order_by(LINKS.c.id.desc())
        ).first()

    def _latest_link(self, session: Session, fingerprint: str) -> IncidentAlert | None:
        return session.scalars(
            select(IncidentAlert)
            .where(LINKS.c.fingerprint == fingerprint)
            .order_by(LINKS.c.id.desc())
        ).first()

    # -- joining and opening -------------------------------------------------------------------

    def _apply(
        self,
        session: Session,
        graph: ServiceGraph,
        alert: Alert,
        service: str,
        decision: Decision,
        now: datetime,
    ) -> None:
        if decision.opens_incident:
            incident = Incident(
                status="open",
                severity=alert.severity,
                title="",
                opened_at=alert.starts_at,
                updated_at=now,
                first_alert_at=alert.starts_at,
                last_alert_at=alert.starts_at,
                services=[],
            )
            session.add(incident)
            session.flush()
            assert incident.id is not None
            because: dict[str, Any] = {"reason": "opened the incident", "hops": None}
            self._link(session, incident, alert, service, because, now)
            self._refresh(session, graph, incident, now)
            self._note(
                session,
                incident.id,
                now,
                "opened",
                f"incident opened: {incident.title}",
                pages=True,
                data={"severity": incident.severity, "fingerprint": alert.fingerprint},
            )
            return
        primary = decision.matches[0]
        target = session.get(Incident, primary.incident.id)
        assert target is not None and target.id is not None
        before = target.severity
        for other in decision.matches[1:]:
            self._merge(session, target, other.incident.id, alert, now)
        self._link(session, target, alert, service, primary.explanation(service), now)
        self._refresh(session, graph, target, now)
        self._note(
            session,
            target.id,
            now,
            "alert_joined",
            f"alert {alert.labels.get('alertname', alert.fingerprint)} on {service} joined: "
            f"{primary.explanation(service)['reason']}",
            data={"fingerprint": alert.fingerprint, **primary.explanation(service)},
        )
        if _rank(target.severity) < _rank(before):
            self._note(
                session,
                target.id,
                now,
                "severity_raised",
                f"severity raised from {before} to {target.severity}",
                pages=True,
                data={"from": before, "to": target.severity},
            )

    def _link(
        self,
        session: Session,
        incident: Incident,
        alert: Alert,
        service: str,
        because: dict[str, Any],
        now: datetime,
    ) -> None:
        assert incident.id is not None
        session.add(
            IncidentAlert(
                incident_id=incident.id,
                fingerprint=alert.fingerprint,
                service=service,
                severity=alert.severity,
                starts_at=alert.starts_at,
                status="firing",
                joined_at=now,
                joined_because=because,
            )
        )
        if service not in incident.services:
            session.add(IncidentService(incident_id=incident.id, service=service, open=True))
            incident.services = sorted({*incident.services, service})
        incident.first_alert_at = min(incident.first_alert_at, alert.starts_at)
        incident.last_alert_at = max(incident.last_alert_at, alert.starts_at)
        incident.opened_at = min(incident.opened_at, alert.starts_at)
        if _rank(alert.severity) < _rank(incident.severity):
            incident.severity = alert.severity
        session.flush()

    def _merge(
        self, session: Session, target: Incident, source_id: int, alert: Alert, now: datetime
    ) -> None:
        source = session.get(Incident, source_id)
        if source is None or source.status != "open" or source.id == target.id:
            return
        assert target.id is not None
        session.execute(
            update(LINKS).where(LINKS.c.incident_id == source_id).values(incident_id=target.id)
        )
        for service in source.services:
            if service not in target.services:
                session.add(IncidentService(incident_id=target.id, service=service, open=True))
        session.execute(
            update(BY_SERVICE).where(BY_SERVICE.c.incident_id == source_id).values(open=False)
        )
        target.services = sorted({*target.services, *source.services})
        target.first_alert_at = min(target.first_alert_at, source.first_alert_at)
        target.last_alert_at = max(target.last_alert_at, source.last_alert_at)
        target.opened_at = min(target.opened_at, source.opened_at)
        if _rank(source.severity) < _rank(target.severity):
            target.severity = source.severity
        target.flapping = target.flapping or source.flapping
        source.status = "merged"
        source.merged_into = target.id
        source.updated_at = now
        reason = f"alert {alert.labels.get('alertname', alert.fingerprint)} links both"
        self._note(
            session,
            source_id,
            now,
            "merged",
            f"merged into incident {target.id}: {reason}",
            data={"into": target.id},
        )
        self._note(
            session,
            target.id,
            now,
            "merged",
            f"incident {source_id} merged into this one: {reason}",
            data={"from": source_id},
        )
        session.flush()

    def _refresh(
        self, session: Session, graph: ServiceGraph, incident: Incident, now: datetime
    ) -> None:
        """Recompute root cause, blast radius and title from the incident's alerts."""
        assert incident.id is not None
        rows = session.execute(
            select(LINKS.c.service, LINKS.c.severity, LINKS.c.starts_at, LINKS.c.fingerprint)
            .where(LINKS.c.incident_id == incident.id)
            .order_by(LINKS.c.starts_at, LINKS.c.id)
        ).all()
        first_seen: dict[str, datetime] = {}
        worst: dict[str, str] = {}
        for service, severity, starts_at, _ in rows:
            if service not in first_seen or starts_at < first_seen[service]:
                first_seen[service] = starts_at
            if service not in worst or _rank(severity) < _rank(worst[service]):
                worst[service] = severity
        affected = sorted(first_seen)
        ranked = graph.rank_root_causes(affected, first_seen, worst)
        previous = list(incident.root_cause_candidates)
        incident.root_cause_candidates = ranked
        incident.blast_radius = graph.blast_radius(ranked[0]) if ranked else []
        incident.updated_at = now
        incident.title = self._title(session, incident, rows)
        if previous and ranked and previous[0] != ranked[0]:
            self._note(
                session,
                incident.id,
                now,
                "root_cause_changed",
                f"likely root cause is now {ranked[0]} (was {previous[0]})",
                data={"from": previous[0], "to": ranked[0]},
            )

    def _title(self, session: Session, incident: Incident, rows: Sequence[Any]) -> str:
        root = incident.root_cause_candidates[0] if incident.root_cause_candidates else "unknown"
        root_fingerprint = next((r[3] for r in rows if r[0] == root), rows[0][3] if rows else None)
        name = "alert"
        if root_fingerprint is not None:
            labels = session.scalar(
                select(ALERTS.c.labels).where(ALERTS.c.fingerprint == root_fingerprint)
            )
            if labels:
                name = labels.get("alertname", name)
        title = f"{name} on {root}"
        others = len(incident.services) - 1
        if others > 0:
            title += f" (+{others} affected service{'s' if others > 1 else ''})"
        return title

    # -- resolving -------------------------------------------------------------------------

    def _resolve(self, session: Session, alert: Alert, state: AlertState, now: datetime) -> None:
        link = self._open_link(session, alert.fingerprint)
        if link is None or link.status == "resolved":
            return
        link.status = "resolved"
        session.flush()
        incident = session.get(Incident, link.incident_id)
        assert incident is not None and incident.id is not None
        if state.flapping:
            return  # a flapping alert's resolve does not close (and re-page) its incident
        still_firing = session.scalar(
            select(func.count())
            .select_from(LINKS)
            .where(LINKS.c.incident_id == incident.id)
            .where(LINKS.c.status == "firing")
        )
        if still_firing:
            return
        ended = session.scalar(
            select(func.max(ALERTS.c.ends_at)).where(
                ALERTS.c.fingerprint.in_(
                    select(LINKS.c.fingerprint).where(LINKS.c.incident_id == incident.id)
                )
            )
        )
        self._close(session, incident, ended or now, now, "all alerts resolved")

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
        self._note(session, incident.id, now, "resolved", why, pages=True)

    # -- timeline ----------------------------------------------------------------------------

    def _note(
        self,
        session: Session,
        incident_id: int | None,
        now: datetime,
        kind: str,
        message: str,
        *,
        pages: bool = False,
        data: dict[str, Any] | None = None,
    ) -> None:
        assert incident_id is not None
        session.add(
            TimelineEntry(
                incident_id=incident_id,
                at=now,
                kind=kind,
                actor="system",
                message=message,
                pages=pages,
                data=data or {},
            )
        )
