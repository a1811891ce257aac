"""Read API for incidents: list with filters and cursor pagination, and the detail view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.exceptions import NotFound, ValidationFailed
from incidents.models import (
    ALERTS,
    BY_SERVICE,
    INCIDENTS,
    LINKS,
    STATES,
    TIMELINE,
    Incident,
)
from incidents.models import TimelineEntry as TimelineRow
from incidents.vocab import TIMELINE_KIND_HELP, TimelineKind

from .deps import check_token, db_session
from .params import CURSOR_PATTERN, IncidentId, UtcDateTime, parse_cursor, strict_params

router = APIRouter(
    prefix="/api/v1/incidents",
    tags=["incidents"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)


Severity = Literal["P0", "P1", "P2", "P3"]
IncidentStatus = Literal["open", "resolved", "merged"]


class IncidentOut(BaseModel):
    """An incident as lists show it."""

    id: int = Field(description="The incident's id; pass it to `GET /api/v1/incidents/{id}`.")
    status: IncidentStatus = Field(
        description="`open`; `resolved` once all its alerts resolved; `merged` into another."
    )
    severity: Severity = Field(description="The highest severity among its alerts, P0 first.")
    title: str = Field(description="A one-line summary, from the alert that opened it.")
    opened_at: datetime = Field(description="When it opened (UTC).")
    updated_at: datetime = Field(description="When it last changed (UTC).")
    resolved_at: datetime | None = Field(
        description="When its last alert ended (UTC); null while open."
    )
    services: list[str] = Field(description="The services its alerts are about.")
    root_cause_candidates: list[str] = Field(
        description=(
            "Services ranked by how likely they are the cause: the affected service that the "
            "others depend on comes first. A candidate may have no alert of its own."
        )
    )
    blast_radius: list[str] = Field(
        description="Every service that depends, directly or not, on the root-cause candidates."
    )
    alert_fingerprints: list[str] = Field(
        description="The fingerprints of its alerts, in the order they started."
    )
    flapping: bool = Field(description="Whether an alert of it keeps firing and resolving.")
    merged_into: int | None = Field(
        description="The incident this one was merged into; null unless `status` is `merged`."
    )


class IncidentAlertOut(BaseModel):
    """One alert of an incident and why it joined."""

    fingerprint: str = Field(description="The alert's fingerprint.")
    labels: dict[str, str] = Field(description="The alert's labels.")
    status: Literal["firing", "resolved"] = Field(description="The alert's state.")
    severity: Severity = Field(description="The alert's severity, derived from its labels.")
    service: str = Field(description="The service the alert is about.")
    starts_at: datetime = Field(description="When the alert started firing (UTC).")
    ends_at: datetime | None = Field(description="When it resolved (UTC); null while firing.")
    joined_at: datetime = Field(description="When it joined this incident (UTC).")
    joined_because: dict[str, Any] = Field(
        description=(
            "Why it joined: `reason`, and `hops`, the distance in the service graph to the "
            "incident's services (null for the alert that opened it)."
        )
    )
    flapping: bool = Field(description="Whether this alert keeps firing and resolving.")


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


class IncidentDetail(IncidentOut):
    """An incident with its alerts and timeline."""

    alerts: list[IncidentAlertOut] = Field(description="Its alerts, in the order they started.")
    timeline: list[TimelineOut] = Field(description="What happened to it, oldest first.")


class IncidentPage(BaseModel):
    """One page of incidents; pass `next_cursor` as `cursor` for the next one."""

    items: list[IncidentOut] = Field(description="The incidents of this page, newest first.")
    next_cursor: str | None = Field(
        description="The `cursor` for the next page; null on the last page."
    )


def _out(row: Incident, fingerprints: list[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "severity": row.severity,
        "title": row.title,
        "opened_at": row.opened_at,
        "updated_at": row.updated_at,
        "resolved_at": row.resolved_at,
        "services": row.services,
        "root_cause_candidates": row.root_cause_candidates,
        "blast_radius": row.blast_radius,
        "alert_fingerprints": fingerprints,
        "flapping": row.flapping,
        "merged_into": row.merged_into,
    }


def _fingerprints(session: Session, ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = session.execute(
        select(LINKS.c.incident_id, LINKS.c.fingerprint)
        .where(LINKS.c.incident_id.in_(ids))
        .order_by(LINKS.c.starts_at, LINKS.c.id)
    )
    for incident_id, fingerprint in rows:
        if fingerprint not in out[incident_id]:
            out[incident_id].append(fingerprint)
    return out


@router.get("", response_model=IncidentPage, summary="List incidents, newest first")
def list_incidents(
    session: Annotated[Session, Depends(db_session)],
    status: Annotated[IncidentStatus | None, Query(description="Only this status.")] = None,
    severity: Annotated[
        list[Severity] | None, Query(description="Only these severities (repeatable).")
    ] = None,
    service: Annotated[str | None, Query(description="Only incidents affecting it.")] = None,
    since: Annotated[
        UtcDateTime | None,
        Query(description="Opened at or after this ISO 8601 time (UTC if no zone given)."),
    ] = None,
    until: Annotated[
        UtcDateTime | None,
        Query(description="Opened before this ISO 8601 time (UTC if no zone given)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` from the previous page."),
    ] = None,
) -> IncidentPage:
    """Incidents filtered by status, severity, affected service and time range."""
    if since and until and until <= since:
        raise ValidationFailed("until: must be after since", field="until")
    query = select(Incident).order_by(INCIDENTS.c.id.desc())
    if status:
        query = query.where(INCIDENTS.c.status == status)
    if severity:
        query = query.where(INCIDENTS.c.severity.in_(severity))
    if service:
        query = query.where(
            INCIDENTS.c.id.in_(
                select(BY_SERVICE.c.incident_id).where(BY_SERVICE.c.service == service)
            )
        )
    if since:
        query = query.where(INCIDENTS.c.opened_at >= since)
    if until:
        query = query.where(INCIDENTS.c.opened_at < until)
    after = parse_cursor(cursor)
    if after is not None:
        query = query.where(INCIDENTS.c.id < after)
    rows = list(session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    prints = _fingerprints(session, [int(r.id or 0) for r in rows])
    items = [IncidentOut.model_validate(_out(r, prints[int(r.id or 0)])) for r in rows]
    return IncidentPage(items=items, next_cursor=str(rows[-1].id) if more and rows else None)


@router.get("/{incident_id}", response_model=IncidentDetail, summary="One incident in full")
def get_incident(
    incident_id: IncidentId, session: Annotated[Session, Depends(db_session)]
) -> IncidentDetail:
    """The incident with its alerts (and why each joined) and its timeline."""
    row = session.get(Incident, incident_id)
    if row is None:
        raise NotFound(f"no incident {incident_id}", field="incident_id")
    links = session.execute(
        select(
            LINKS.c.fingerprint,
            LINKS.c.service,
            LINKS.c.severity,
            LINKS.c.starts_at,
            LINKS.c.status,
            LINKS.c.joined_at,
            LINKS.c.joined_because,
            ALERTS.c.labels,
            ALERTS.c.ends_at,
            STATES.c.flapping,
        )
        .join(ALERTS, ALERTS.c.fingerprint == LINKS.c.fingerprint)
        .outerjoin(STATES, STATES.c.fingerprint == LINKS.c.fingerprint)
        .where(LINKS.c.incident_id == incident_id)
        .order_by(LINKS.c.starts_at, LINKS.c.id)
    ).all()
    alerts = [
        IncidentAlertOut(
            fingerprint=fp,
            service=service,
            severity=severity,
            starts_at=starts_at,
            status=status,
            joined_at=joined_at,
            joined_because=because,
            labels=labels,
            ends_at=ends_at if status == "resolved" else None,
            flapping=bool(flapping),
        )
        for (
            fp,
            service,
            severity,
            starts_at,
            status,
            joined_at,
            because,
            labels,
            ends_at,
            flapping,
        ) in links
    ]
    timeline = [
        TimelineOut.model_validate(t, from_attributes=True)
        for t in session.scalars(
            select(TimelineRow)
            .where(TIMELINE.c.incident_id == incident_id)
            .order_by(TIMELINE.c.at, TIMELINE.c.id)
        )
    ]
    fingerprints = list(dict.fromkeys(a.fingerprint for a in alerts))
    return IncidentDetail.model_validate(
        {**_out(row, fingerprints), "alerts": alerts, "timeline": timeline}
    )
