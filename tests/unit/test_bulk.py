"""incidents.bulk: many rows in one statement, on SQLite and PostgreSQL, including rows
that name different columns (a folded notification names its `error`, others do not)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from incidents import bulk
from incidents.db import create_db_engine, make_session_factory, session_scope
from incidents.models import Incident
from incidents.notify.models import NOTIFICATIONS

AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _row(incident_id: int | None, target: str, **more: object) -> dict[str, object]:
    return {
        "incident_id": incident_id,
        "event_key": "entry:1",
        "event": "updated",
        "receiver": "r",
        "channel": "slack",
        "target": target,
        "status": "pending",
        "attempts": 0,
        "not_before": AT,
        "created_at": AT,
        "updated_at": AT,
        "details": [f"to {target}"],
        **more,
    }


def test_rows_naming_different_columns_keep_their_values_and_order(db_url: str) -> None:
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        incident = Incident(
            severity="P1",
            title="db down",
            opened_at=AT,
            updated_at=AT,
            first_alert_at=AT,
            last_alert_at=AT,
            services=["db"],
        )
        session.add(incident)
        session.flush()
        incident_id = incident.id
    rows = [
        _row(incident_id, "#a"),
        _row(incident_id, "#b", status="cancelled", error="folded into the update waiting"),
        _row(incident_id, "#c"),
        _row(incident_id, "#a"),  # breaks the unique key: left out
    ]
    with session_scope(sessions) as session:
        bulk.insert(session, NOTIFICATIONS, rows, skip_conflicts=True)
    n = NOTIFICATIONS.c
    with session_scope(sessions) as session:
        got = session.execute(
            sa.select(n.target, n.status, n.error, n.details).order_by(n.id)
        ).all()
        assert [tuple(r) for r in got] == [
            ("#a", "pending", None, ["to #a"]),
            ("#b", "cancelled", "folded into the update waiting", ["to #b"]),
            ("#c", "pending", None, ["to #c"]),
        ]
        ids = {t: i for i, t in session.execute(sa.select(n.id, n.target))}
        bulk.update(
            session,
            NOTIFICATIONS,
            [
                {"id": ids["#a"], "status": "sent"},
                {"id": ids["#c"], "status": "failed", "error": "channel_not_found"},
            ],
        )
    with session_scope(sessions) as session:
        got = session.execute(sa.select(n.target, n.status, n.error).order_by(n.id)).all()
        assert [tuple(r) for r in got] == [
            ("#a", "sent", None),
            ("#b", "cancelled", "folded into the update waiting"),
            ("#c", "failed", "channel_not_found"),
        ]
    engine.dispose()
