"""Read API for incidents: list with filters and cursor pagination, and the detail view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
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

from .deps import as_utc, check_token, db_session, parse_cursor

router = APIRouter(
    prefix="/api/v1/incidents", tags=["incidents"], dependencies=[Depends(check_token)]
)


class IncidentOut(BaseModel):
    """An incident as lists show it."""

    id: int
    status: str
    severity: str
    title: str
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    services: list[str]
    root_cause_candidates: list[str]
    blast_radius: list[str]
    alert_fingerprints: list[str]
    flapping: bool
    merged_into: int | None


class IncidentAlertOut(BaseModel):
    """One alert of an incident and why it joined."""

    fingerprint: str
    labels: dict[str, str]
    status: str
    severity: str
    service: str
    starts_at: datetime
    ends_at: datetime | None
    joined_at: datetime
    joined_because: dict[str, Any]
    flapping: bool


class TimelineOut(BaseModel):
    """One entry of an incident's timeline."""

    at: datetime
    kind: str
    actor: str
    message: str
    pages: bool
    data: dict[str, Any]


class IncidentDetail(IncidentOut):
    """An incident with its alerts and timeline."""

    alerts: list[IncidentAlertOut]
    timeline: list[TimelineOut]


class IncidentPage(BaseModel):
    """One page of incidents; pass `next_cursor` as `cursor` for the next one."""

    items: list[IncidentOut]
    next_cursor: str | None


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
    status: Literal["open", "resolved", "merged"] | None = None,
    severity: Annotated[list[Literal["P0", "P1", "P2", "P3"]] | None, Query()] = None,
    service: str | None = None,
    since: Annotated[datetime | None, Query(description="opened at or after")] = None,
    until: Annotated[datetime | None, Query(description="opened before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> IncidentPage:
    """Incidents filtered by status, severity, affected service and time range."""
    since, until = as_utc(since), as_utc(until)
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
    incident_id: int, session: Annotated[Session, Depends(db_session)]
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
