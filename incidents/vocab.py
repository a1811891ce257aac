"""Words the service and its API share: enums whose values are stored and shown.

Every module names severities, statuses and timeline kinds through these enums, so a
value that is stored in one place and compared in another cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    """How urgent an alert or incident is; P0 is the most urgent."""

    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


SEVERITY_ORDER: tuple[str, ...] = tuple(s.value for s in Severity)


def severity_rank(severity: str | None) -> int:
    """0 for P0, 3 for P3; anything unknown ranks below every known severity."""
    if severity in SEVERITY_ORDER:
        return SEVERITY_ORDER.index(severity)
    return len(SEVERITY_ORDER)


def more_severe(a: str | None, b: str | None) -> bool:
    """True when `a` is strictly more urgent than `b` (None is the least urgent)."""
    return severity_rank(a) < severity_rank(b)


def worst(*severities: str | None) -> str | None:
    """The most urgent of these severities."""
    known = [s for s in severities if s is not None]
    return min(known, key=severity_rank) if known else None


class AlertStatus(StrEnum):
    """An alert's state as its source reported it."""

    FIRING = "firing"
    RESOLVED = "resolved"


class IncidentStatus(StrEnum):
    """Where an incident is in its life."""

    OPEN = "open"
    RESOLVED = "resolved"
    MERGED = "merged"


class IncidentState(StrEnum):
    """The lifecycle people move an incident through (the API's `state`)."""

    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class MemberStatus(StrEnum):
    """An alert's standing inside its incident."""

    FIRING = "firing"
    RESOLVED = "resolved"
    # Inhibited by another alert of the incident: shown, but it pages no one and does not
    # count towards the incident's roots or severity.
    MUTED = "muted"


class JobStatus(StrEnum):
    """A pipeline job's state."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TimelineKind(StrEnum):
    """What a timeline entry records about its incident."""

    OPENED = "opened"
    ALERT_JOINED = "alert_joined"
    SEVERITY_RAISED = "severity_raised"
    ROOT_CAUSE_CHANGED = "root_cause_changed"
    REROOTED = "rerooted"
    FLAPPING = "flapping"
    MERGED = "merged"
    STORM = "storm"
    REOPENED = "reopened"
    RESOLVED = "resolved"
    NOTIFICATION_FAILED = "notification_failed"
    ACKNOWLEDGED = "acknowledged"
    STATUS_CHANGED = "status_changed"
    SEVERITY_CHANGED = "severity_changed"
    ASSIGNED = "assigned"
    NOTE = "note"
    ESCALATED = "escalated"
    PLAYBOOK_RUN = "playbook_run"
    PLAYBOOK_STEP = "playbook_step"
    ALERT_STALE = "alert_stale"


TIMELINE_KIND_HELP: dict[TimelineKind, str] = {
    TimelineKind.OPENED: "the first alert opened the incident",
    TimelineKind.ALERT_JOINED: "an alert joined the incident; `data` says why",
    TimelineKind.SEVERITY_RAISED: "a more severe alert raised the incident's severity",
    TimelineKind.ROOT_CAUSE_CHANGED: "the most likely root-cause service changed",
    TimelineKind.REROOTED: "an alert below the incident's roots became its new root",
    TimelineKind.FLAPPING: "an alert of the incident started flapping",
    TimelineKind.MERGED: "this incident was merged into another, or another into this one",
    TimelineKind.STORM: "more incidents opened in a minute than the storm cap: one page for all",
    TimelineKind.REOPENED: "an alert fired again shortly after the incident resolved",
    TimelineKind.RESOLVED: "the incident resolved: all its alerts did; `message` says why",
    TimelineKind.NOTIFICATION_FAILED: "a notification could not be delivered; `data` says to whom",
    TimelineKind.ACKNOWLEDGED: "someone acknowledged the incident (`actor`); escalation stops",
    TimelineKind.STATUS_CHANGED: "someone set investigating, identified or monitoring",
    TimelineKind.SEVERITY_CHANGED: "someone changed the severity (a raise is severity_raised)",
    TimelineKind.ASSIGNED: "someone assigned the incident; `data` names the assignee",
    TimelineKind.NOTE: "a note someone wrote on the incident",
    TimelineKind.ESCALATED: "an escalation step paged a level of the policy; `data` says whom",
    TimelineKind.PLAYBOOK_RUN: "a playbook run was queued, waits for approval, or finished",
    TimelineKind.PLAYBOOK_STEP: "a playbook step ran, was skipped or failed; `data` has its result",
    TimelineKind.ALERT_STALE: "a firing alert was not sent again for the stale time: its "
    "sender may have stopped or lost its resolve; `data` names it",
}
