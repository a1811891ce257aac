"""Merging one incident into another, as the correlation does when a common cause or a
linked root is found and as people do by hand (`merging`).

The oldest incident survives. Members, services, severity and what was paged move to it;
each moved alert's `joined_because` says it came with the merge, and why; the survivor's
timeline lists the alerts that moved and carries the absorbed incident's entries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm.attributes import set_committed_value

from incidents.models import ALERTS, BY_SERVICE, LINKS, TIMELINE, Incident, IncidentAlert
from incidents.pipeline import paging
from incidents.pipeline.incident_state import Job, note
from incidents.pipeline.lifecycle import add_stats, id_of, move_opened
from incidents.vocab import IncidentState, IncidentStatus, TimelineKind, worst


def merge_into(job: Job, target: Incident, source: Incident, why: str) -> None:
    """Fold `source` into `target`: members, services, severity and what was paged move."""
    target_id, source_id = id_of(target), id_of(source)
    if source.status != IncidentStatus.OPEN or source_id == target_id:
        return
    moved = _move_members(job, source_id, target_id, why)
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
    if source.opened_at < target.opened_at:
        move_opened(job, target, source.opened_at)
    target.severity = worst(target.severity, source.severity) or target.severity
    # Alerts paged at P0 before the merge were paged: the survivor's rise is no new page.
    paging.merge_pages(job, target, source)
    joined = job.joins.pop(source_id, [])
    if joined:
        job.joins.setdefault(target_id, []).extend(joined)
    target.flapping = target.flapping or source.flapping
    target.service_stats = add_stats(target.service_stats, source.service_stats)
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


def moved_because(before: dict[str, Any] | None, source_id: int, why: str) -> dict[str, Any]:
    """Why a member of an absorbed incident is in the survivor: it came with the merge.
    What placed it first is kept under `originally`."""
    before = before or {}
    if before.get("action") == "open":
        was = f"it opened incident {source_id}"
    elif before.get("reason"):
        was = f"it was in incident {source_id} ({before['reason']})"
    else:
        was = f"it was in incident {source_id}"
    moved = {
        **before,
        "action": "moved",
        "reason": f"{was}, which merged into this one: {why}",
        "moved_from": source_id,
        "absorbed": [],
        "originally": before.get("originally", before),
    }
    return moved


def _move_members(job: Job, source_id: int, target_id: int, why: str) -> list[dict[str, Any]]:
    """Re-point every membership of `source`, stored or still buffered in this job, and
    say on each that it came with the merge."""
    moved: list[dict[str, Any]] = []
    for row in job.new_links:
        if row["incident_id"] == source_id:
            row["incident_id"] = target_id
            row["joined_because"] = moved_because(row["joined_because"], source_id, why)
            moved.append({"fingerprint": row["fingerprint"], "name": row["fingerprint"]})
    job.session.flush()  # stored memberships this job changed must move as they are now
    stored = job.session.execute(
        select(LINKS.c.id, LINKS.c.fingerprint, LINKS.c.joined_because)
        .where(LINKS.c.incident_id == source_id)
        .order_by(LINKS.c.id)
    ).all()
    if stored:
        job.session.execute(
            update(LINKS)
            .where(LINKS.c.id == bindparam("link_id"))
            .values(incident_id=target_id, joined_because=bindparam("because")),
            [
                {"link_id": link_id, "because": moved_because(because, source_id, why)}
                for link_id, _, because in stored
            ],
        )
        # Memberships this job read keep their new incident (the update bypassed them).
        for member in job.session.identity_map.values():
            if isinstance(member, IncidentAlert) and member.incident_id == source_id:
                set_committed_value(member, "incident_id", target_id)
                because = moved_because(member.joined_because, source_id, why)
                set_committed_value(member, "joined_because", because)
    moved = [{"fingerprint": fp, "name": fp} for _, fp, _ in stored] + moved
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
