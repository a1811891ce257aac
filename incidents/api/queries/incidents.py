"""The incidents API's reads: keyword-only queries, one per question the routes ask."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.models import ALERTS, BY_SERVICE, INCIDENTS, LINKS, STATES, TIMELINE, Incident
from incidents.models import TimelineEntry as TimelineRow


def page_of_incidents(
    session: Session,
    *,
    status: str | None,
    severity: Sequence[str] | None,
    service: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> tuple[list[Incident], bool]:
    """Incidents newest first, filtered; and whether more follow."""
    query = select(Incident).order_by(INCIDENTS.c.id.desc())
    if status:
        query = query.where(INCIDENTS.c.status == status)
    if severity:
        query = query.where(INCIDENTS.c.severity.in_(list(severity)))
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
    if before_id is not None:
        query = query.where(INCIDENTS.c.id < before_id)
    rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def fingerprints_of(session: Session, *, ids: list[int]) -> dict[int, list[str]]:
    """Each incident's alert fingerprints, in the order they started."""
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


def members_of(session: Session, *, incident_id: int) -> list[dict[str, Any]]:
    """The incident's alerts with their labels, state and why they joined."""
    rows = session.execute(
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
            ALERTS.c.last_received,
            STATES.c.flapping,
        )
        .join(ALERTS, ALERTS.c.fingerprint == LINKS.c.fingerprint)
        .outerjoin(STATES, STATES.c.fingerprint == LINKS.c.fingerprint)
        .where(LINKS.c.incident_id == incident_id)
        .order_by(LINKS.c.starts_at, LINKS.c.id)
    ).mappings()
    return [dict(row) for row in rows]


def timeline_of(session: Session, *, incident_id: int) -> list[TimelineRow]:
    """The incident's timeline, oldest first."""
    return list(
        session.scalars(
            select(TimelineRow)
            .where(TIMELINE.c.incident_id == incident_id)
            .order_by(TIMELINE.c.at, TIMELINE.c.id)
        )
    )


def incidents_by_id(session: Session, *, ids: Sequence[int]) -> dict[int, Incident]:
    """These incidents, by id (missing ones left out)."""
    if not ids:
        return {}
    rows = session.scalars(select(Incident).where(INCIDENTS.c.id.in_(sorted(set(ids)))))
    return {int(row.id or 0): row for row in rows}
