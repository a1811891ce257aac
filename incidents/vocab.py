"""Words the service and its API share: enums whose values are stored and shown."""

from __future__ import annotations

from enum import StrEnum


class TimelineKind(StrEnum):
    """What a timeline entry records about its incident."""

    OPENED = "opened"
    ALERT_JOINED = "alert_joined"
    SEVERITY_RAISED = "severity_raised"
    ROOT_CAUSE_CHANGED = "root_cause_changed"
    FLAPPING = "flapping"
    MERGED = "merged"
    REOPENED = "reopened"
    RESOLVED = "resolved"


TIMELINE_KIND_HELP: dict[TimelineKind, str] = {
    TimelineKind.OPENED: "the first alert opened the incident",
    TimelineKind.ALERT_JOINED: "an alert joined the incident; `data` says why",
    TimelineKind.SEVERITY_RAISED: "a more severe alert raised the incident's severity",
    TimelineKind.ROOT_CAUSE_CHANGED: "the most likely root-cause service changed",
    TimelineKind.FLAPPING: "an alert of the incident started flapping",
    TimelineKind.MERGED: "this incident was merged into another, or another into this one",
    TimelineKind.REOPENED: "an alert fired again shortly after the incident resolved",
    TimelineKind.RESOLVED: "the incident resolved: all its alerts did; `message` says why",
}
