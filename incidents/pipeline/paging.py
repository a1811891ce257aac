"""What pages: one page per real incident, whatever order its alerts arrive in.

An incident's opening page is held for `correlation.open_hold_seconds` (the notification
stage sends it once the hold is over, as Alertmanager's group_wait holds a first
notification). When a merge folds two incidents together, at most one opening page of
theirs stands: one already sent stays, one still held is cancelled (its entry keeps
`pages: false` and says where it went). So two replicas of an HA pair that deliver a
cascade from opposite ends open two incidents for a moment, merge them, and page once.

What was paged is recorded on the incident (`paged_severity`, `paged_at`); a merge or a
join raises `severity`, and a page is due only when it rises above what was paged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from incidents.models import Incident, TimelineEntry
from incidents.notify.models import NOTIFICATIONS
from incidents.pipeline.incident_state import Job, note
from incidents.pipeline.stages import IncidentEvent
from incidents.vocab import IncidentStatus, TimelineKind, more_severe, worst


def _held(job: Job, incident: Incident) -> bool:
    """Whether the incident's opening page is still held (not sent yet)."""
    if incident.id in job.opened:
        return True
    for data in job.session.scalars(
        select(TimelineEntry.data)  # type: ignore[call-overload]
        .where(TimelineEntry.incident_id == incident.id)
        .where(TimelineEntry.kind == TimelineKind.OPENED)
        .where(TimelineEntry.pages)
    ):
        until = (data or {}).get("hold_until")
        if until and datetime.fromisoformat(until) > job.now:
            return True
    return False


def _cancel_opening(job: Job, incident_id: int, into: int) -> None:
    """The incident's held opening page will not be sent: the merge covers it."""
    for row in job.notes:
        if row["incident_id"] == incident_id and row["kind"] == TimelineKind.OPENED:
            row["pages"] = False
            row["data"] = {**row["data"], "folded_into": into}
    for entry in job.session.scalars(
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id)  # type: ignore[arg-type]
        .where(TimelineEntry.kind == TimelineKind.OPENED)  # type: ignore[arg-type]
        .where(TimelineEntry.pages)  # type: ignore[arg-type]
    ):
        entry.pages = False
        entry.data = {**entry.data, "folded_into": into}
    # Its notifications wait for the hold to end: they are not sent either.
    n = NOTIFICATIONS.c
    job.session.execute(
        update(NOTIFICATIONS)
        .where(n.incident_id == incident_id, n.event == TimelineKind.OPENED, n.status == "pending")
        .values(status="cancelled", error=f"folded into incident {into}", updated_at=job.now)
    )


def merge_pages(job: Job, target: Incident, source: Incident) -> None:
    """Settle the opening pages and what was paged when `source` merges into `target`."""
    target_id, source_id = int(target.id or 0), int(source.id or 0)
    source_held, target_held = _held(job, source), _held(job, target)
    if source_held:
        _cancel_opening(job, source_id, target_id)
        return  # the target's page (held or sent) stands for both
    if target_held:
        # The source's page went out: it stands, and the target's held one is not sent.
        _cancel_opening(job, target_id, target_id)
        job.opened.discard(target_id)
        target.paged_severity, target.paged_at = source.paged_severity, source.paged_at
        return
    # Both pages went out: the alerts paged at either severity were paged.
    target.paged_severity = worst(target.paged_severity, source.paged_severity)


def page_raises(job: Job) -> None:
    """One page per incident whose severity rose above what was paged for its alerts. An
    incident whose opening page is still held pages once, at the severity it has now."""
    for incident_id in sorted(job.touched | job.opened):
        incident = job.incident(incident_id)
        if incident.status != IncidentStatus.OPEN:
            continue
        if incident_id in job.opened:
            _raise_held(job, incident_id, incident.severity)
            incident.paged_severity = incident.severity
            continue
        if not more_severe(incident.severity, incident.paged_severity):
            continue
        if _held(job, incident):
            # Its opening page is not sent yet: it goes out at the severity it has now.
            _raise_stored_opening(job, incident_id, incident.severity)
            incident.paged_severity = incident.severity
            continue
        before = incident.paged_severity
        incident.paged_severity, incident.paged_at = incident.severity, job.now
        note(
            job,
            incident_id,
            TimelineKind.SEVERITY_RAISED,
            f"severity raised from {before} to {incident.severity}",
            pages=True,
            data={"from": before, "to": incident.severity},
        )


def _raise_held(job: Job, incident_id: int, severity: str) -> None:
    for row in job.notes:
        if row["incident_id"] == incident_id and row["kind"] == TimelineKind.OPENED:
            row["data"] = {**row["data"], "severity": severity}


def _raise_stored_opening(job: Job, incident_id: int, severity: str) -> None:
    """The held opening page goes out at the new severity, to the receivers the routes
    pick for it now: its waiting rows (routed at the old severity) are dropped and the
    opening is routed again, as if it had opened at this severity."""
    n = NOTIFICATIONS.c
    for entry in job.session.scalars(
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id)  # type: ignore[arg-type]
        .where(TimelineEntry.kind == TimelineKind.OPENED)  # type: ignore[arg-type]
        .where(TimelineEntry.pages)  # type: ignore[arg-type]
    ):
        entry.data = {**entry.data, "severity": severity}
        job.session.execute(
            delete(NOTIFICATIONS).where(
                n.incident_id == incident_id,
                n.event_key == f"entry:{entry.id}",
                n.status == "pending",
            )
        )
        job.rerouted.append(
            IncidentEvent(
                incident_id,
                TimelineKind.OPENED,
                severity,
                pages=True,
                data=dict(entry.data),
                entry_id=entry.id,
            )
        )


def hold_until(job: Job) -> datetime:
    """When an opening page written now may be sent."""
    return job.now + job.open_hold


def opening_data(job: Job, data: dict[str, Any]) -> dict[str, Any]:
    """The opened entry's data with the time its page is held until."""
    return {**data, "hold_until": hold_until(job).isoformat()}
