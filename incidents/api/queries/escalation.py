"""Reads for the escalation figures of /metrics."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from incidents.models import INCIDENTS


def overdue(session: Session, now: datetime, grace: timedelta) -> tuple[int, float]:
    """How many escalation steps are past their deadline by more than `grace`, and how
    far past it the oldest is, in seconds."""
    count, oldest = session.execute(
        select(func.count(), func.min(INCIDENTS.c.escalation_due_at)).where(
            INCIDENTS.c.escalation_due_at < now - grace
        )
    ).one()
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return int(count or 0), age
