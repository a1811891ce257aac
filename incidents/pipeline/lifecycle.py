"""An incident's life as plain functions: open, add a member, re-root, reopen, close
(merging is `absorb.merge_into`).

The incident stage calls them while it holds the correlation lock; the API's resolve,
reopen and merge actions reuse them. None of them makes a network call: paging is a
timeline entry with `pages` set, which the notification stage reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from incidents import timeline
from incidents.correlation.grouping import OpenIncident, Placement
from incidents.correlation.index import IncidentLink
from incidents.models import ALERTS, BY_SERVICE, INCIDENTS, LINKS, TIMELINE, Alert, Incident
from incidents.notify import outbox
from incidents.pipeline import paging
from incidents.pipeline.incident_state import (
    Job,
    Member,
    NewLink,
    alert_name,
    alert_title,
    note,
)
from incidents.vocab import (
    IncidentState,
    IncidentStatus,
    MemberStatus,
    TimelineKind,
    more_severe,
)


def as_open(job: Job, incident_id: int) -> OpenIncident:
    """What placement needs of an incident, with its roots worked out if never stored."""
    incident = job.incident(incident_id)
    if not incident.roots and incident.service_stats:
        incident.roots = job.rule.roots(incident.service_stats)  # opened before rule v2
    return OpenIncident(incident_id, incident.opened_at, tuple(incident.roots))


def open_incident(
    job: Job, alert: Alert, service: str, *, storm_cap: int | None = None
) -> Incident:
    """A new incident holding this alert, and its 'opened' entry: a page, unless the
    minute's cap of `storm_cap` pages is spent and it is folded into the storm page."""
    values: dict[str, Any] = {
        "status": IncidentStatus.OPEN.value,
        "severity": alert.severity,
        "title": f"{alert_name(alert)} on {service}",
        "opened_at": alert.starts_at,
        "updated_at": job.now,
        "first_alert_at": alert.starts_at,
        "last_alert_at": alert.starts_at,
        "services": [],
        "root_cause_candidates": [],
        "root_causes": [],
        "roots": [],
        "blast_radius": [],
        "service_stats": {},
        "flapping": False,
        "merged_into": None,
        "resolved_at": None,
        "paged_severity": alert.severity,
        "paged_at": job.now,
    }
    # Insert just this row for its id, rather than flushing everything pending.
    new_id = job.session.execute(
        insert(INCIDENTS).values(**values).returning(INCIDENTS.c.id)
    ).scalar_one()
    incident = Incident(id=new_id, **values)
    make_transient_to_detached(incident)
    job.session.add(incident)
    job.incidents[new_id] = incident
    job.opened.add(new_id)
    because = Placement("open", "opened the incident").as_data()
    add_member(job, incident, alert, service, because)
    message = f"incident opened by alert {alert_name(alert)} on {service} ({alert.severity})"
    data: dict[str, Any] = {
        "severity": alert.severity,
        "fingerprint": alert.fingerprint,
        "service": service,
    }
    if storm_cap is not None:
        message += f"; alert storm: more than {storm_cap} incidents in a minute, paged together"
        data["storm"] = True
        job.storm_folded.append(new_id)
    note(
        job,
        new_id,
        TimelineKind.OPENED,
        message,
        pages=storm_cap is None,
        data=paging.opening_data(job, data),
        at=alert.starts_at,
    )
    return incident


def add_member(
    job: Job,
    incident: Incident,
    alert: Alert,
    service: str,
    because: dict[str, Any],
    status: MemberStatus = MemberStatus.FIRING,
) -> NewLink:
    """Make the alert a member; a muted member is shown but counts for nothing."""
    incident_id = id_of(incident)
    link = NewLink(
        {
            "incident_id": incident_id,
            "fingerprint": alert.fingerprint,
            "service": service,
            "severity": alert.severity,
            "starts_at": alert.starts_at,
            "status": status.value,
            "joined_at": job.now,
            "joined_because": because,
        }
    )
    job.new_links.append(link.row)
    job.open_links[alert.fingerprint] = link
    job.latest_links[alert.fingerprint] = link
    if status is not MemberStatus.MUTED:
        count_member(job, incident, alert, service)
    incident.updated_at = job.now
    return link


def count_member(job: Job, incident: Incident, alert: Alert, service: str) -> None:
    """Let a member count: the index, services, roots, severity and time span see it."""
    incident_id = id_of(incident)
    job.index.add_link(IncidentLink(incident_id, service, alert.starts_at))
    if service not in incident.services:
        job.new_services.append({"incident_id": incident_id, "service": service, "open": True})
        incident.services = sorted({*incident.services, service})
    incident.first_alert_at = min(incident.first_alert_at, alert.starts_at)
    incident.last_alert_at = max(incident.last_alert_at, alert.starts_at)
    if alert.starts_at < incident.opened_at:
        move_opened(job, incident, alert.starts_at)
    if more_severe(alert.severity, incident.severity):
        incident.severity = alert.severity
    seen: dict[str, Any] = {
        "first": alert.starts_at.isoformat(),
        "worst": alert.severity,
        "name": alert_name(alert),
    }
    title = alert_title(alert)
    if title is not None:
        seen["title"] = title  # names the incident while this alert is the root's first
    stats = add_stats(incident.service_stats, {service: seen})
    if stats != incident.service_stats:
        if service not in incident.service_stats:
            incident.roots = _roots_with(job, incident, service)
        incident.service_stats = stats
        job.touched.add(incident_id)


def move_opened(job: Job, incident: Incident, at: datetime) -> None:
    """An alert that started earlier joined: the incident opened then, and its "opened"
    entry (still queued in this job, or stored) says so too."""
    incident_id = id_of(incident)
    incident.opened_at = at
    for row in job.notes:
        if row["incident_id"] == incident_id and row["kind"] == TimelineKind.OPENED:
            row["at"] = at
    if incident_id not in job.opened:
        job.session.execute(
            update(TIMELINE)
            .where(TIMELINE.c.incident_id == incident_id)
            .where(TIMELINE.c.kind == TimelineKind.OPENED)
            .values(at=at)
        )


def reroot(job: Job, incident_id: int, service: str, alert: Alert, placement: Placement) -> None:
    """Say on the timeline that the alert's service is now a root of the incident: it
    explains the roots it had (a cause found later), or it merged incidents."""
    if placement.action == "reroot":
        message = placement.reason
    else:
        message = f"{service} is now a root of this incident: {placement.reason}"
    note(
        job,
        incident_id,
        TimelineKind.REROOTED,
        message,
        data={"service": service, "fingerprint": alert.fingerprint, **placement.as_data()},
    )


def _roots_with(job: Job, incident: Incident, service: str) -> list[str]:
    """The incident's roots once `service` is one of its alerting services."""
    rule = job.rule
    own = rule.node(service)
    current = incident.roots or rule.roots(incident.service_stats)
    kept = [r for r in current if not (rule.node(r) != own and service in rule.below(r))]
    below = rule.below(service)
    if not any(s in below and rule.node(s) != own for s in incident.service_stats):
        kept.append(service)
    return sorted(set(kept))


def reopen_incident(session: Session, incident: Incident, now: datetime, *, pages: bool) -> None:
    """A resolved incident opens again, triggered; what `pages` is paged again now. The
    caller writes the "reopened" entry (who or what reopened it)."""
    incident.status = IncidentStatus.OPEN.value
    incident.state = IncidentState.TRIGGERED.value
    incident.state_changed_at = now
    incident.acknowledged_at = incident.acknowledged_by = None
    incident.resolved_at = None
    incident.updated_at = now
    if pages:
        incident.paged_severity, incident.paged_at = incident.severity, now
    session.execute(
        update(BY_SERVICE).where(BY_SERVICE.c.incident_id == id_of(incident)).values(open=True)
    )


def reopen(job: Job, alert: Alert, link: Member, *, quiet: float, pages: bool) -> None:
    """An alert fired again soon after its incident resolved: the incident opens again."""
    incident = job.incident(link.incident_id)
    incident_id = id_of(incident)
    reopen_incident(job.session, incident, job.now, pages=pages)
    incident.last_alert_at = max(incident.last_alert_at, alert.starts_at)
    link.status = MemberStatus.FIRING.value
    job.open_links[alert.fingerprint] = link
    job.index.add_link(IncidentLink(incident_id, link.service, link.starts_at))
    note(
        job,
        incident_id,
        TimelineKind.REOPENED,
        f"alert {alert_name(alert)} fired again {int(quiet)} s after the incident resolved",
        pages=pages,
        data={"fingerprint": alert.fingerprint},
    )


# The event keys of escalation notifications (incidents.escalation.engine.KEY_PREFIX):
# `escalation:{run}:{round}:{level}`, a run being each start of the incident's ladder.
ESCALATION_KEYS = "escalation:"


def close(
    session: Session,
    incident: Incident,
    ended: datetime,
    now: datetime,
    why: str,
    *,
    actor: str = "system",
    data: dict[str, Any] | None = None,
) -> int:
    """Resolve an incident; resolving pages (people are told it is over). Returns the
    id of its "resolved" timeline entry."""
    incident_id = id_of(incident)
    incident.status = IncidentStatus.RESOLVED.value
    incident.state = IncidentState.RESOLVED.value
    incident.state_changed_at = now
    incident.escalation_due_at = None
    outbox.cancel_scheduled(session, incident_id, ESCALATION_KEYS, "resolved", now)
    incident.quiet_until = None
    incident.resolved_at = ended
    incident.updated_at = now
    session.execute(
        update(BY_SERVICE).where(BY_SERVICE.c.incident_id == incident_id).values(open=False)
    )
    entry = timeline.entry(
        incident_id, TimelineKind.RESOLVED, why, at=now, pages=True, data=data, actor=actor
    )
    [entry_id] = timeline.write(session, [entry])
    return entry_id


def firing_members(session: Session, incident_id: int) -> tuple[int, datetime | None]:
    """How many members still fire, and the latest end among its alerts."""
    firing, ended = session.execute(
        select(
            func.count().filter(LINKS.c.status == MemberStatus.FIRING),
            func.max(ALERTS.c.ends_at),
        )
        .select_from(LINKS)
        .join(ALERTS, ALERTS.c.fingerprint == LINKS.c.fingerprint)
        .where(LINKS.c.incident_id == incident_id)
    ).one()
    return int(firing or 0), ended


def add_stats(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
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
            merged.pop("title", None)
            if "title" in new:
                merged["title"] = new["title"]
        if more_severe(new["worst"], old["worst"]):
            merged["worst"] = new["worst"]
        out[service] = merged
    return out


def id_of(incident: Incident) -> int:
    if incident.id is None:
        raise ValueError("an incident without an id was handed to the lifecycle")
    return incident.id
