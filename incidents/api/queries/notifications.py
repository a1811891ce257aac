"""Reads of the notification outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from incidents.db import aggregate_time
from incidents.notify.models import NOTIFICATIONS


def notifications_of(session: Session, *, incident_id: int) -> list[dict[str, Any]]:
    """The incident's notifications, oldest first."""
    n = NOTIFICATIONS.c
    rows = session.execute(
        select(NOTIFICATIONS).where(n.incident_id == incident_id).order_by(n.created_at, n.id)
    ).mappings()
    return [dict(row) for row in rows]


def notification_counts(session: Session) -> dict[tuple[str, str], int]:
    """Notifications by (channel, status), for /metrics."""
    n = NOTIFICATIONS.c
    rows = session.execute(
        select(n.channel, n.status, func.count()).group_by(n.channel, n.status)
    ).tuples()
    return {(channel, status): int(count) for channel, status, count in rows}


def oldest_due(session: Session, now: datetime) -> dict[str, datetime]:
    """Per channel, since when its oldest due notification has waited, for /metrics."""
    n = NOTIFICATIONS.c
    rows = session.execute(
        select(n.channel, func.min(n.not_before))
        .where(n.status == "pending", n.not_before <= now)
        .group_by(n.channel)
    ).tuples()
    return {channel: aggregate_time(since) for channel, since in rows}
