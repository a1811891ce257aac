"""Incidents API: list with filters and cursor pagination, the detail view, and the
explanation of its grouping."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from incidents.api.incident_schemas import (
    AlertExplanation,
    Explanation,
    IncidentAlertOut,
    IncidentDetail,
    IncidentOut,
    IncidentPage,
    IncidentStatus,
    RelatedOut,
    Severity,
    TimelineOut,
)
from incidents.api.queries import incidents as queries
from incidents.apikeys.scopes import INCIDENTS_READ
from incidents.db import utcnow
from incidents.exceptions import NotFound, ValidationFailed
from incidents.models import Incident
from incidents.vocab import MemberStatus
from incidents.warroom.people import war_room_link

from .deps import check_token, db_session, service
from .params import CURSOR_PATTERN, IncidentId, UtcDateTime, parse_cursor, strict_params
from .principal import require

router = APIRouter(
    prefix="/api/v1/incidents",
    tags=["incidents"],
    dependencies=[Depends(check_token), require(INCIDENTS_READ), Depends(strict_params)],
)


def incident_out(row: Incident, fingerprints: list[str]) -> dict[str, Any]:
    """An incident row as IncidentOut fields."""
    return {
        "id": row.id,
        "status": row.status,
        "severity": row.severity,
        "title": row.title,
        "opened_at": row.opened_at,
        "updated_at": row.updated_at,
        "resolved_at": row.resolved_at,
        "services": row.services,
        "roots": row.roots,
        "root_cause_candidates": row.root_cause_candidates,
        "root_causes": row.root_causes,
        "blast_radius": row.blast_radius,
        "alert_fingerprints": fingerprints,
        "flapping": row.flapping,
        "merged_into": row.merged_into,
        "paged_severity": row.paged_severity,
        "paged_at": row.paged_at,
        "state": row.state,
        "acknowledged_at": row.acknowledged_at,
        "acknowledged_by": row.acknowledged_by,
        "assignee": row.assignee,
    }


def _found(session: Session, incident_id: int) -> Incident:
    row = session.get(Incident, incident_id)
    if row is None:
        raise NotFound(f"no incident {incident_id}", field="incident_id")
    return row


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
    rows, more = queries.page_of_incidents(
        session,
        status=status,
        severity=severity,
        service=service,
        since=since,
        until=until,
        before_id=parse_cursor(cursor),
        limit=limit,
    )
    prints = queries.fingerprints_of(session, ids=[int(r.id or 0) for r in rows])
    items = [IncidentOut.model_validate(incident_out(r, prints[int(r.id or 0)])) for r in rows]
    return IncidentPage(items=items, next_cursor=str(rows[-1].id) if more and rows else None)


@router.get("/{incident_id}", response_model=IncidentDetail, summary="One incident in full")
def get_incident(
    request: Request, incident_id: IncidentId, session: Annotated[Session, Depends(db_session)]
) -> IncidentDetail:
    """The incident with its alerts (and why each is there) and its timeline."""
    row = _found(session, incident_id)
    stale_after = service(request).settings.correlation.stale_after_seconds
    stale_before = utcnow() - timedelta(seconds=stale_after) if stale_after else None
    alerts = [
        IncidentAlertOut(
            fingerprint=m["fingerprint"],
            service=m["service"],
            severity=m["severity"],
            starts_at=m["starts_at"],
            status=m["status"],
            joined_at=m["joined_at"],
            joined_because=m["joined_because"],
            labels=m["labels"],
            ends_at=m["ends_at"] if m["status"] == MemberStatus.RESOLVED else None,
            flapping=bool(m["flapping"]),
            last_received=m["last_received"],
            stale=m["status"] == MemberStatus.FIRING
            and stale_before is not None
            and m["last_received"] < stale_before,
        )
        for m in queries.members_of(session, incident_id=incident_id)
    ]
    timeline = [
        TimelineOut.model_validate(t, from_attributes=True)
        for t in queries.timeline_of(session, incident_id=incident_id)
    ]
    fingerprints = list(dict.fromkeys(a.fingerprint for a in alerts))
    return IncidentDetail.model_validate(
        {
            **incident_out(row, fingerprints),
            "alerts": alerts,
            "timeline": timeline,
            "war_room": war_room_link(session, incident_id),
        }
    )


@router.get(
    "/{incident_id}/explain",
    response_model=Explanation,
    summary="Why each alert of an incident is in it",
)
def explain_incident(
    incident_id: IncidentId, session: Annotated[Session, Depends(db_session)]
) -> Explanation:
    """For each alert: why it is where it is, and which other incidents it could have joined."""
    row = _found(session, incident_id)
    members = queries.members_of(session, incident_id=incident_id)
    related_ids = [
        int(i) for m in members for i in (m["joined_because"] or {}).get("possibly_related", [])
    ]
    related = queries.incidents_by_id(session, ids=related_ids)
    alerts = []
    for m in members:
        because = m["joined_because"] or {}
        alerts.append(
            AlertExplanation(
                fingerprint=m["fingerprint"],
                alertname=(m["labels"] or {}).get("alertname"),
                service=m["service"],
                status=m["status"],
                action=str(because.get("action", "join")),
                reason=str(because.get("reason", "")),
                via=because.get("via"),
                hops=because.get("hops"),
                absorbed=[int(i) for i in because.get("absorbed", [])],
                moved_from=because.get("moved_from"),
                possibly_related=[
                    RelatedOut(
                        id=int(i),
                        status=related[int(i)].status,
                        title=related[int(i)].title,
                        merged_into=related[int(i)].merged_into,
                    )
                    for i in because.get("possibly_related", [])
                    if int(i) in related
                ],
            )
        )
    return Explanation(
        id=incident_id,
        status=row.status,
        roots=row.roots,
        root_causes=row.root_causes,
        merged_into=row.merged_into,
        alerts=alerts,
    )
