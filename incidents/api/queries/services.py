"""Reads behind /api/v1/services/{name}: what is open on a service, and its maintenance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, select
from sqlalchemy.orm import Session
from sqlmodel import col

from incidents.models import Incident, IncidentService, Silence
from incidents.vocab import IncidentStatus


def open_incidents(
    session: Session, *, service: str
) -> Sequence[Row[int | None, str, str, datetime]]:
    """Id, severity, title and opening time of the open incidents on `service`, newest first."""
    return session.execute(
        select(
            col(Incident.id), col(Incident.severity), col(Incident.title), col(Incident.opened_at)
        )
        .join(IncidentService, col(IncidentService.incident_id) == col(Incident.id))
        .where(col(IncidentService.service) == service)
        .where(col(Incident.status) == IncidentStatus.OPEN)
        .order_by(col(Incident.id).desc())
    ).all()


def maintenance_windows(
    session: Session, *, service: str, now: datetime
) -> Sequence[Row[str, datetime, datetime, str]]:
    """Id, start, end and comment of the windows on `service` that end after `now`, by start."""
    return session.execute(
        select(col(Silence.id), col(Silence.starts_at), col(Silence.ends_at), col(Silence.comment))
        .where(col(Silence.service) == service)
        .where(col(Silence.ends_at) > now)
        .order_by(col(Silence.starts_at))
    ).all()
