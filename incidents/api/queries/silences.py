"""Reads behind both silence APIs (/api/v1/silences and Alertmanager's /api/v2)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from incidents.models import Silence


def get_silence(session: Session, *, silence_id: str) -> Silence | None:
    """The silence with this id, if any."""
    return session.get(Silence, silence_id)


def list_silences(
    session: Session, *, ended: bool | None, now: datetime, limit: int
) -> list[Silence]:
    """Newest first: those ended by `now` (ended=True), the others (False), or all (None)."""
    query = select(Silence).order_by(col(Silence.created_at).desc())
    if ended is False:
        query = query.where(col(Silence.ends_at) > now)
    elif ended:
        query = query.where(col(Silence.ends_at) <= now)
    return list(session.scalars(query.limit(limit)))


def silences_ending_after(session: Session, *, after: datetime) -> list[Silence]:
    """Every silence that ends (or ended) after `after`, in no particular order."""
    return list(session.scalars(select(Silence).where(col(Silence.ends_at) > after)))
