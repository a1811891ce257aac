"""Timeline entries: the one way every part of the service writes an incident's history."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from incidents import bulk
from incidents.models import TIMELINE
from incidents.pipeline.totals import count_events
from incidents.vocab import TimelineKind


def entry(
    incident_id: int,
    kind: TimelineKind,
    message: str,
    *,
    at: datetime,
    pages: bool = False,
    data: dict[str, Any] | None = None,
    actor: str = "system",
) -> dict[str, Any]:
    """A timeline row, ready to insert."""
    return {
        "incident_id": incident_id,
        "at": at,
        "kind": str(kind),
        "actor": actor,
        "message": message,
        "pages": pages,
        "data": data or {},
    }


def write(session: Session, entries: Iterable[dict[str, Any]], *, ids: bool = True) -> list[int]:
    """Insert entries in one statement, count the counted kinds in the totals; return
    the new rows' ids, in the order given (later stages key their work on them), or
    none when `ids` is False (cheaper, for writers that need no ids)."""
    rows = list(entries)
    if not rows:
        return []
    count_events(session, (row["kind"] for row in rows))
    if not ids:
        bulk.insert(session, TIMELINE, rows, skip_conflicts=False)
        return []
    result = session.execute(
        insert(TIMELINE).returning(TIMELINE.c.id, sort_by_parameter_order=True), rows
    )
    return [int(i) for i in result.scalars()]
