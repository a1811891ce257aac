"""Incidents written straight to the database, for tests below the pipeline."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from incidents.db import session_scope, utcnow
from incidents.models import Incident


def make_incidents(sessions: sessionmaker[Session], count: int) -> list[int]:
    """`count` open P1 incidents; their ids."""
    now = utcnow()
    with session_scope(sessions) as session:
        rows = [
            Incident(
                severity="P1",
                title=f"incident {i}",
                opened_at=now,
                updated_at=now,
                first_alert_at=now,
                last_alert_at=now,
            )
            for i in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [int(r.id) for r in rows if r.id is not None]
