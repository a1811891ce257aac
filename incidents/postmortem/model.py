"""The postmortem view model: plain frozen values, built once, rendered three ways."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class IncidentFacts:
    """What the incident is: the header of every rendering."""

    id: int
    title: str
    severity: str
    status: str
    state: str
    services: tuple[str, ...]
    assignee: str | None
    flapping: bool
    merged_into: int | None


@dataclass(frozen=True)
class Times:
    """When it was detected, paged, acknowledged and resolved, and the spans between."""

    detected_at: datetime
    first_page_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    time_to_acknowledge_seconds: float | None
    time_to_resolve_seconds: float | None
    duration_seconds: float
    ongoing: bool


@dataclass(frozen=True)
class Cause:
    """A ranked root-cause candidate and why it is one."""

    rank: int
    service: str
    inferred: bool
    reason: str
    explains: tuple[str, ...]


@dataclass(frozen=True)
class AlertMember:
    """One alert of the incident, and why it joined."""

    fingerprint: str
    alertname: str
    service: str
    severity: str
    status: str
    starts_at: datetime
    ends_at: datetime | None
    action: str
    reason: str
    via: str | None
    hops: int | None
    labels: dict[str, str]


@dataclass(frozen=True)
class Related:
    """Another incident one of its alerts could have joined."""

    id: int
    title: str
    status: str
    merged_into: int | None
    alerts: tuple[str, ...]


# The role a service plays in the picture, most telling first.
ROLES: tuple[str, ...] = ("root_cause", "candidate", "affected", "blast_radius", "context")


@dataclass(frozen=True)
class GraphNode:
    """A service in the picture: its role, whether it alerted, and its layer."""

    service: str
    team: str | None
    role: str
    alerting: bool
    in_blast_radius: bool
    depth: int


@dataclass(frozen=True)
class GraphEdge:
    """`source` depends on `target`."""

    source: str
    target: str


@dataclass(frozen=True)
class Neighbourhood:
    """The dependency graph around the incident; `left_out` counts services not drawn."""

    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    left_out: int = 0


@dataclass(frozen=True)
class Event:
    """One line of the timeline: an entry, an alert firing or resolving, or a notification."""

    at: datetime
    kind: str
    actor: str
    message: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """One notification to one target, and how it went."""

    event: str
    receiver: str
    target: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    error: str | None
    provider_status: str | None


@dataclass(frozen=True)
class ChannelReport:
    """The notifications of one channel, and how many ended in each status."""

    channel: str
    counts: dict[str, int]
    deliveries: tuple[Delivery, ...]


@dataclass(frozen=True)
class EscalationStep:
    """One step of the escalation ladder that ran."""

    at: datetime
    policy: str
    level: int
    round: int
    paged: tuple[str, ...]
    done: bool


@dataclass(frozen=True)
class PlaybookStep:
    """One step of a playbook run and its result."""

    at: datetime
    step: str
    action: str | None
    status: str | None
    result: str | None
    error: str | None


@dataclass(frozen=True)
class PlaybookRun:
    """A playbook run on the incident, with its steps in order."""

    run_id: str
    playbook: str
    status: str | None
    started_at: datetime
    steps: tuple[PlaybookStep, ...]


@dataclass(frozen=True)
class Section:
    """A section for people: prefilled lines where the data allows, else left to write."""

    key: str
    title: str
    prefill: tuple[str, ...]
    needs_author: bool


@dataclass(frozen=True)
class Postmortem:
    """Everything a postmortem shows, read from the database in one go."""

    generated_at: datetime
    incident: IncidentFacts
    times: Times
    roots: tuple[str, ...]
    root_causes: tuple[Cause, ...]
    blast_radius: tuple[str, ...]
    alerts: tuple[AlertMember, ...]
    related: tuple[Related, ...]
    graph: Neighbourhood
    timeline: tuple[Event, ...]
    notifications: tuple[ChannelReport, ...]
    escalation: tuple[EscalationStep, ...]
    playbook_runs: tuple[PlaybookRun, ...]
    sections: tuple[Section, ...]
