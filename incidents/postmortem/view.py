"""Build the postmortem view from the database: plain functions that take a session.

The reads are the incidents API's own queries (members, timeline, related incidents,
notifications), so the postmortem shows what the API shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from incidents.api.queries import incidents as incident_queries
from incidents.api.queries import notifications as notification_queries
from incidents.correlation.store import current_graph
from incidents.db import utcnow
from incidents.exceptions import NotFound
from incidents.models import Incident
from incidents.postmortem.events import (
    channel_reports,
    escalation_steps,
    merged_timeline,
    playbook_runs,
)
from incidents.postmortem.model import (
    AlertMember,
    Cause,
    IncidentFacts,
    Postmortem,
    Related,
    Times,
)
from incidents.postmortem.neighbourhood import neighbourhood
from incidents.postmortem.sections import prefill_sections
from incidents.vocab import TimelineKind


def build_postmortem(
    session: Session, incident_id: int, *, now: datetime | None = None
) -> Postmortem:
    """The postmortem of one incident; NotFound when there is no such incident."""
    row = session.get(Incident, incident_id)
    if row is None:
        raise NotFound(f"no incident {incident_id}", field="incident_id")
    now = now or utcnow()
    members = incident_queries.members_of(session, incident_id=incident_id)
    entries = incident_queries.timeline_of(session, incident_id=incident_id)
    notifications = notification_queries.notifications_of(session, incident_id=incident_id)
    alerts = tuple(_member(m) for m in members)
    causes = tuple(
        Cause(
            rank=n,
            service=str(c.get("service", "")),
            inferred=bool(c.get("inferred", False)),
            reason=str(c.get("reason", "")),
            explains=tuple(str(s) for s in c.get("explains", [])),
        )
        for n, c in enumerate(row.root_causes or [], start=1)
    )
    timeline = merged_timeline(entries, alerts, notifications)
    times = _times(row, entries, notifications, now)
    facts = IncidentFacts(
        id=int(row.id or incident_id),
        title=row.title,
        severity=row.severity,
        status=row.status,
        state=row.state,
        services=tuple(row.services),
        assignee=row.assignee,
        flapping=row.flapping,
        merged_into=row.merged_into,
    )
    channels = channel_reports(notifications)
    steps = escalation_steps(entries)
    runs = playbook_runs(entries)
    return Postmortem(
        generated_at=now,
        incident=facts,
        times=times,
        roots=tuple(row.roots),
        root_causes=causes,
        blast_radius=tuple(row.blast_radius),
        alerts=alerts,
        related=_related(session, members),
        graph=neighbourhood(
            current_graph(session),
            affected=row.services,
            candidates=[c.service for c in causes],
            blast_radius=row.blast_radius,
            roots=row.roots,
        ),
        timeline=timeline,
        notifications=channels,
        escalation=steps,
        playbook_runs=runs,
        sections=prefill_sections(facts, times, causes, alerts, channels, steps, runs),
    )


def _member(m: dict[str, Any]) -> AlertMember:
    because = m["joined_because"] or {}
    labels = {str(k): str(v) for k, v in (m["labels"] or {}).items()}
    hops = because.get("hops")
    return AlertMember(
        fingerprint=m["fingerprint"],
        alertname=labels.get("alertname", m["fingerprint"]),
        service=m["service"],
        severity=m["severity"],
        status=m["status"],
        starts_at=m["starts_at"],
        ends_at=m["ends_at"] if m["status"] == "resolved" else None,
        action=str(because.get("action", "join")),
        reason=str(because.get("reason", "")),
        via=because.get("via"),
        hops=int(hops) if isinstance(hops, int) else None,
        labels=labels,
    )


def _related(session: Session, members: list[dict[str, Any]]) -> tuple[Related, ...]:
    by_incident: dict[int, list[str]] = {}
    for m in members:
        for other in (m["joined_because"] or {}).get("possibly_related", []):
            name = (m["labels"] or {}).get("alertname", m["fingerprint"])
            by_incident.setdefault(int(other), []).append(str(name))
    found = incident_queries.incidents_by_id(session, ids=list(by_incident))
    return tuple(
        Related(
            id=i,
            title=found[i].title,
            status=found[i].status,
            merged_into=found[i].merged_into,
            alerts=tuple(dict.fromkeys(by_incident[i])),
        )
        for i in sorted(by_incident)
        if i in found
    )


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else max(0.0, (end - start).total_seconds())


def _times(
    row: Incident, entries: list[Any], notifications: list[dict[str, Any]], now: datetime
) -> Times:
    sent = [n["sent_at"] for n in notifications if n["sent_at"] is not None]
    resolved = row.resolved_at
    resolved_by = next(
        (e.actor for e in reversed(entries) if e.kind == TimelineKind.RESOLVED.value), None
    )
    end = resolved or now
    return Times(
        detected_at=row.opened_at,
        first_page_at=min(sent) if sent else None,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        resolved_at=resolved,
        resolved_by=resolved_by if resolved else None,
        time_to_acknowledge_seconds=_seconds(row.opened_at, row.acknowledged_at),
        time_to_resolve_seconds=_seconds(row.opened_at, resolved),
        duration_seconds=_seconds(row.opened_at, end) or 0.0,
        ongoing=resolved is None,
    )
