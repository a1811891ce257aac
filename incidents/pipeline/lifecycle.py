"""An incident's life as plain functions: open, add a member, merge, reopen, close.

The incident stage calls them while it holds the correlation lock; the API's
acknowledge and resolve endpoints (next issues) reuse them. None of them makes a network
call: paging is a timeline entry with `pages` set, which the notification stage reads.
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
    worst,
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
    incident_id = _id(incident)
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
    incident_id = _id(incident)
    job.index.add_link(IncidentLink(incident_id, service, alert.starts_at))
    if service not in incident.services:
        job.new_services.append({"incident_id": incident_id, "service": service, "open": True})
        incident.services = sorted({*incident.services, service})
    incident.first_alert_at = min(incident.first_alert_at, alert.starts_at)
    incident.last_alert_at = max(incident.last_alert_at, alert.starts_at)
    incident.opened_at = min(incident.opened_at, alert.starts_at)
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
    stats = _add_stats(incident.service_stats, {service: seen})
    if stats != incident.service_stats:
        if service not in incident.service_stats:
            incident.roots = _roots_with(job, incident, service)
        incident.service_stats = stats
        job.touched.add(incident_id)


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


def merge_into(job: Job, target: Incident, source: Incident, why: str) -> None:
    """Fold `source` into `target`: members, services, severity and what was paged move."""
    target_id, source_id = _id(target), _id(source)
    if source.status != IncidentStatus.OPEN or source_id == target_id:
        return
    moved = _move_members(job, source_id, target_id)
    for service in source.services:
        if service not in target.services:
            job.new_services.append({"incident_id": target_id, "service": service, "open": True})
    job.session.execute(
        update(BY_SERVICE).where(BY_SERVICE.c.incident_id == source_id).values(open=False)
    )
    job.index.merge(source_id, target_id)
    target.services = sorted({*target.services, *source.services})
    target.first_alert_at = min(target.first_alert_at, source.first_alert_at)
    target.last_alert_at = max(target.last_alert_at, source.last_alert_at)
    target.opened_at = min(target.opened_at, source.opened_at)
    target.severity = worst(target.severity, source.severity) or target.severity
    # Alerts paged at P0 before the merge were paged: the survivor's rise is no new page.
    paging.merge_pages(job, target, source)
    joined = job.joins.pop(source_id, [])
    if joined:
        job.joins.setdefault(target_id, []).extend(joined)
    target.flapping = target.flapping or source.flapping
    target.service_stats = _add_stats(target.service_stats, source.service_stats)
    target.roots = job.rule.roots(target.service_stats)
    target.updated_at = job.now
    source.status = IncidentStatus.MERGED.value
    source.state = IncidentState.RESOLVED.value
    source.escalation_due_at = None
    source.merged_into = target_id
    source.updated_at = job.now
    job.touched.add(target_id)
    job.touched.discard(source_id)
    absorbed = _fold_notes(job, source_id, target_id)
    note(
        job,
        source_id,
        TimelineKind.MERGED,
        f"merged into incident {target_id}: {why}",
        data={"into": target_id},
    )
    shown = ", ".join(m["name"] for m in moved[:10]) + (" ..." if len(moved) > 10 else "")
    note(
        job,
        target_id,
        TimelineKind.MERGED,
        f"incident {source_id} merged into this one ({len(moved)} alerts moved: {shown}): {why}",
        data={"from": source_id, "moved": moved[:100], "absorbed_entries": absorbed},
    )


def _move_members(job: Job, source_id: int, target_id: int) -> list[dict[str, Any]]:
    """Re-point every membership of `source`, stored or still buffered in this job."""
    moved: list[dict[str, Any]] = []
    for row in job.new_links:
        if row["incident_id"] == source_id:
            row["incident_id"] = target_id
            moved.append({"fingerprint": row["fingerprint"], "name": row["fingerprint"]})
    job.session.flush()  # stored memberships this job changed must move as they are now
    stored = job.session.scalars(
        select(LINKS.c.fingerprint).where(LINKS.c.incident_id == source_id).order_by(LINKS.c.id)
    ).all()
    job.session.execute(
        update(LINKS)
        .where(LINKS.c.incident_id == source_id)
        .values(incident_id=target_id)
        .execution_options(synchronize_session="fetch")
    )
    moved = [{"fingerprint": fp, "name": fp} for fp in stored] + moved
    shown = [m["fingerprint"] for m in moved[:100]]
    for fingerprint, labels in job.session.execute(
        select(ALERTS.c.fingerprint, ALERTS.c.labels).where(ALERTS.c.fingerprint.in_(shown))
    ):
        for m in moved[:100]:
            if m["fingerprint"] == fingerprint:
                m["name"] = labels.get("alertname", fingerprint)
    return moved


def _fold_notes(job: Job, source_id: int, target_id: int) -> list[dict[str, Any]]:
    """The absorbed incident's entries, for the survivor's merge entry."""
    entries: list[dict[str, Any]] = []
    for row in job.notes:
        if row["incident_id"] != source_id:
            continue
        entries.append(
            {"at": row["at"].isoformat(), "kind": row["kind"], "message": row["message"]}
        )
    if source_id not in job.opened:
        stored = job.session.execute(
            select(TIMELINE.c.at, TIMELINE.c.kind, TIMELINE.c.message)
            .where(TIMELINE.c.incident_id == source_id)
            .order_by(TIMELINE.c.id)
            .limit(50)
        ).all()
        entries = [
            {"at": at.isoformat(), "kind": kind, "message": message} for at, kind, message in stored
        ] + entries
    return entries


def reopen(job: Job, alert: Alert, link: Member, *, quiet: float, pages: bool) -> None:
    """An alert fired again soon after its incident resolved: the incident opens again."""
    incident = job.incident(link.incident_id)
    incident_id = _id(incident)
    incident.status = IncidentStatus.OPEN.value
    incident.state = IncidentState.TRIGGERED.value
    incident.state_changed_at = job.now
    incident.acknowledged_at = incident.acknowledged_by = None
    incident.resolved_at = None
    incident.updated_at = job.now
    incident.last_alert_at = max(incident.last_alert_at, alert.starts_at)
    if pages:
        incident.paged_severity, incident.paged_at = incident.severity, job.now
    link.status = MemberStatus.FIRING.value
    job.open_links[alert.fingerprint] = link
    job.session.execute(
        update(BY_SERVICE).where(BY_SERVICE.c.incident_id == incident_id).values(open=True)
    )
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
    incident_id = _id(incident)
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
            merged.pop("title", None)
            if "title" in new:
                merged["title"] = new["title"]
        if more_severe(new["worst"], old["worst"]):
            merged["worst"] = new["worst"]
        out[service] = merged
    return out


def _id(incident: Incident) -> int:
    if incident.id is None:
        raise ValueError("an incident without an id was handed to the lifecycle")
    return incident.id
