"""The daily digest: one email per recipient a day, listing the incidents routed to a
digest receiver (the shipped example sends P3 this way) since the last one.

Routing leaves those events as `digest` rows. Once a day, at `notify.digest_hour` (UTC),
the email worker thread sends each recipient with waiting rows one email listing them,
and marks the rows `bundled` under it. A recipient's digest is sent at most once per
day; nothing waits longer than a day and a bit, and nothing is dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import session_scope, utcnow
from incidents.models import INCIDENTS
from incidents.notify.base import Notification, Notifier
from incidents.notify.models import NOTIFICATIONS

SHOWN = 50  # incidents listed in one digest; the rest are counted


def due_since(now: datetime, hour: int) -> datetime:
    """The latest digest time at or before now: rows created before it are due."""
    today = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return today if today <= now else today - timedelta(days=1)


def send_digests(
    factory: sessionmaker[Session], email: Notifier, *, hour: int, public_url: str
) -> int:
    """Send every recipient's due digest; return how many emails went out."""
    now = utcnow()
    cutoff = due_since(now, hour)
    n = NOTIFICATIONS.c
    with session_scope(factory) as session:
        rows = session.execute(
            select(n.id, n.target, n.incident_id, n.event)
            .where(n.status == "digest", n.channel == "email", n.created_at <= cutoff)
            .order_by(n.target, n.id)
        ).all()
        incidents = {
            r.id: r
            for r in session.execute(
                select(
                    INCIDENTS.c.id, INCIDENTS.c.severity, INCIDENTS.c.status, INCIDENTS.c.title
                ).where(INCIDENTS.c.id.in_(sorted({r.incident_id for r in rows})))
            )
        }
    by_target: dict[str, list[tuple[int, int, str]]] = {}
    for row in rows:
        by_target.setdefault(row.target, []).append((row.id, row.incident_id, row.event))
    sent = 0
    for target, waiting in by_target.items():
        ids = sorted({incident_id for _, incident_id, _ in waiting})
        lines = [
            f"#{i} {incidents[i].severity} {incidents[i].title} ({incidents[i].status})"
            for i in ids[:SHOWN]
            if i in incidents
        ]
        if len(ids) > SHOWN:
            lines.append(f"... and {len(ids) - SHOWN} more")
        note = Notification(
            delivery_id=waiting[0][0],
            incident_id=ids[0],
            event="digest",
            severity=min((incidents[i].severity for i in ids if i in incidents), default="P3"),
            status="open",
            title=f"Daily digest: {len(ids)} incident(s) since the last digest",
            services=(),
            root_cause=None,
            root_reason=None,
            blast_radius=(),
            url=f"{public_url.rstrip('/')}/api/v1/incidents",
            target=target,
            details=tuple(lines),
        )
        result = email.send(note)
        if not result.ok:
            continue  # the rows stay waiting; the next round tries again
        with session_scope(factory) as session:
            session.execute(
                update(NOTIFICATIONS)
                .where(n.id.in_([row_id for row_id, _, _ in waiting]), n.status == "digest")
                .values(
                    status="bundled",
                    sent_at=now,
                    provider_id=result.provider_id,
                    error=None,
                    updated_at=now,
                )
            )
        sent += 1
    return sent
