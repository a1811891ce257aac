"""What the incidents API returns: the shapes, with a description for every field."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from incidents.vocab import TIMELINE_KIND_HELP, TimelineKind

Severity = Literal["P0", "P1", "P2", "P3"]
IncidentStatus = Literal["open", "resolved", "merged"]
IncidentState = Literal[
    "triggered", "acknowledged", "investigating", "identified", "monitoring", "resolved"
]
MemberStatus = Literal["firing", "resolved", "muted"]


class RootCauseOut(BaseModel):
    """A root-cause candidate and why it is one."""

    service: str = Field(description="The service.")
    inferred: bool = Field(
        description="True when the service has no alert: a dependency that the incident's "
        "roots share, inferred as the likely cause."
    )
    reason: str = Field(description="Why it is a candidate, for a person.")
    explains: list[str] = Field(description="The alerting services that depend on it.")


class IncidentOut(BaseModel):
    """An incident as lists show it."""

    id: int = Field(description="The incident's id; pass it to `GET /api/v1/incidents/{id}`.")
    status: IncidentStatus = Field(
        description="`open`; `resolved` once all its alerts resolved; `merged` into another."
    )
    severity: Severity = Field(description="The highest severity among its counted alerts.")
    title: str = Field(description="A one-line summary, from the alert on its first root.")
    opened_at: datetime = Field(description="The start of its earliest alert (UTC).")
    updated_at: datetime = Field(description="When it last changed (UTC).")
    resolved_at: datetime | None = Field(
        description="When its last alert ended (UTC); null while open."
    )
    services: list[str] = Field(description="The services its counted alerts are about.")
    roots: list[str] = Field(
        description="Its alerting services that no other of its alerting services lies "
        "below (correlation rule v2)."
    )
    root_cause_candidates: list[str] = Field(
        description="Services ranked by how likely they are the cause (names of `root_causes`)."
    )
    root_causes: list[RootCauseOut] = Field(
        description="The ranked candidates with why; `inferred` marks a silent dependency."
    )
    blast_radius: list[str] = Field(
        description="Every service that depends, directly or not, on the first candidate."
    )
    alert_fingerprints: list[str] = Field(
        description="The fingerprints of its alerts, in the order they started."
    )
    flapping: bool = Field(description="Whether an alert of it keeps firing and resolving.")
    merged_into: int | None = Field(
        description="The incident this one was merged into; null unless `status` is `merged`."
    )
    paged_severity: Severity | None = Field(
        description="The severity last paged for it; a page is due only when `severity` "
        "rises above it. Null if nothing was paged."
    )
    paged_at: datetime | None = Field(description="When it last paged (UTC).")
    state: IncidentState = Field(
        description="Where people have it: `triggered` until someone acknowledges, then "
        "`acknowledged`, `investigating`, `identified` or `monitoring`; `resolved`. "
        "`status` says whether it still takes alerts."
    )
    acknowledged_at: datetime | None = Field(description="When it was acknowledged (UTC).")
    acknowledged_by: str | None = Field(description="Who acknowledged it, and from where.")
    assignee: str | None = Field(description="Who it is assigned to.")


class IncidentAlertOut(BaseModel):
    """One alert of an incident and why it is there."""

    fingerprint: str = Field(description="The alert's fingerprint.")
    labels: dict[str, str] = Field(description="The alert's labels.")
    status: MemberStatus = Field(
        description="`firing` or `resolved`; `muted` when another alert of the incident "
        "inhibits it: shown, paging no one, not counted for severity or roots."
    )
    severity: Severity = Field(description="The alert's severity, derived from its labels.")
    service: str = Field(description="The service the alert is about.")
    starts_at: datetime = Field(description="When the alert started firing (UTC).")
    ends_at: datetime | None = Field(description="When it resolved (UTC); null while firing.")
    joined_at: datetime = Field(description="When it joined this incident (UTC).")
    joined_because: dict[str, Any] = Field(
        description="Why it is here: `action` (open, join, reroot, merge, muted), `reason`, "
        "`via` (the service that linked it) and `hops` (the distance), `absorbed` (incidents "
        "it merged in) and `possibly_related` (other incidents it could have joined)."
    )
    flapping: bool = Field(description="Whether this alert keeps firing and resolving.")
    last_received: datetime = Field(description="When a sender last sent this alert (UTC).")
    stale: bool = Field(
        description="Firing, but not sent again for `correlation.stale_after_seconds`: "
        "Alertmanager may have lost its resolve."
    )


class TimelineOut(BaseModel):
    """One entry of an incident's timeline."""

    at: datetime = Field(description="When it happened (UTC).")
    kind: TimelineKind = Field(
        description="What happened: "
        + "; ".join(f"`{k.value}`: {text}" for k, text in TIMELINE_KIND_HELP.items())
        + "."
    )
    actor: str = Field(description="Who did it: `system` for the pipeline.")
    message: str = Field(description="What happened, for a person.")
    pages: bool = Field(description="Whether this event is one that pages someone.")
    data: dict[str, Any] = Field(description="Details that depend on `kind`.")


class WarRoomOut(BaseModel):
    """An incident's Slack war room."""

    channel: str = Field(description="The Slack channel id.")
    name: str = Field(description="The channel's name.")
    archived: bool = Field(description="Whether it was archived (after the resolve).")


class IncidentDetail(IncidentOut):
    """An incident with its alerts and timeline."""

    alerts: list[IncidentAlertOut] = Field(description="Its alerts, in the order they started.")
    timeline: list[TimelineOut] = Field(description="What happened to it, oldest first.")
    war_room: WarRoomOut | None = Field(
        default=None, description="Its P0 war room (a Slack channel), once one was created."
    )


class IncidentPage(BaseModel):
    """One page of incidents; pass `next_cursor` as `cursor` for the next one."""

    items: list[IncidentOut] = Field(description="The incidents of this page, newest first.")
    next_cursor: str | None = Field(
        description="The `cursor` for the next page; null on the last page."
    )


class RelatedOut(BaseModel):
    """Another incident an alert could have joined."""

    id: int = Field(description="Its id.")
    status: IncidentStatus = Field(description="Its status now.")
    title: str = Field(description="Its title.")
    merged_into: int | None = Field(description="Where it went, if merged since.")


class AlertExplanation(BaseModel):
    """Why one alert is where it is."""

    fingerprint: str = Field(description="The alert's fingerprint.")
    alertname: str | None = Field(description="Its alertname label.")
    service: str = Field(description="The service it stands on in the graph.")
    status: MemberStatus = Field(description="Its standing in the incident.")
    action: str = Field(
        description="open, join, reroot, merge, muted, or moved (it came with a merge)."
    )
    reason: str = Field(description="Why, in words.")
    via: str | None = Field(description="The service that linked it, if any.")
    hops: int | None = Field(description="The distance to `via`.")
    absorbed: list[int] = Field(description="Incidents it merged into this one.")
    moved_from: int | None = Field(
        default=None, description="The incident it was in before that one merged into this."
    )
    possibly_related: list[RelatedOut] = Field(
        description="Other open incidents it could have joined when it arrived."
    )


class Explanation(BaseModel):
    """The trace of an incident's grouping, alert by alert."""

    id: int = Field(description="The incident's id.")
    status: IncidentStatus = Field(description="Its status.")
    roots: list[str] = Field(description="Its roots now.")
    root_causes: list[RootCauseOut] = Field(description="Its ranked root-cause candidates.")
    merged_into: int | None = Field(
        default=None, description="The incident it merged into (its alerts are there now)."
    )
    alerts: list[AlertExplanation] = Field(description="Each alert, in the order it started.")
