"""The one rule for writing an alert's state over the stored one, in Python and in SQL.

- A delivery whose state time (start while firing, end once resolved) is older than the
  stored one never overwrites it; at equal times a resolve is not undone by a firing.
- A firing alert re-sent while it still fires keeps the earliest start we saw.
- A delivery without a start (`start_known` false) keeps the stored start: a resolve
  never moves a start to the time of its resolve. Only a new episode (firing after a
  resolve) takes its time of receipt as the start.

`merge_rows` applies the rule to repeats within one batch; the SQLAlchemy statement and
the PostgreSQL one apply it against the stored row, and must stay the same rule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, not_, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.expression import ColumnElement

from incidents.ingest.adapters import AlertRecord
from incidents.models import ALERTS
from incidents.vocab import AlertStatus

STATE_COLUMNS = (
    "source",
    "status",
    "labels",
    "annotations",
    "ends_at",
    "generator_url",
    "group_key",
    "severity",
    "service",
    "extra",
    "ignored_by",
)


def wins(record: AlertRecord, status: str, state_at: datetime) -> bool:
    """True when `record` would replace a stored (status, state_at)."""
    if record.state_at != state_at:
        return record.state_at > state_at
    return not (status == AlertStatus.RESOLVED and record.status == AlertStatus.FIRING)


def _fold(record: AlertRecord, current: AlertRecord) -> None:
    """Carry over from the state `record` replaces what the rule keeps."""
    if current.status == AlertStatus.FIRING and record.status == AlertStatus.FIRING:
        if current.starts_at <= record.starts_at:
            record.starts_at = current.starts_at
            record.start_known = current.start_known
        record.state_at = record.starts_at
    elif not record.start_known and not (
        current.status == AlertStatus.RESOLVED and record.status == AlertStatus.FIRING
    ):
        record.starts_at = current.starts_at
        record.start_known = current.start_known


def merge_rows(
    records: list[tuple[AlertRecord, str]], now: datetime
) -> tuple[list[dict[str, Any]], list[bool]]:
    """Fold repeats of a fingerprint within one batch into one row (PostgreSQL needs that);
    return the rows and, for each, whether its start is known."""
    merged: dict[str, tuple[AlertRecord, str, int]] = {}
    for record, source in records:
        seen = merged.get(record.fingerprint)
        if seen is None:
            merged[record.fingerprint] = (record, source, 1)
            continue
        current, current_source, count = seen
        if wins(record, current.status, current.state_at):
            _fold(record, current)
            merged[record.fingerprint] = (record, source, count + 1)
        else:
            merged[record.fingerprint] = (current, current_source, count + 1)
    rows = []
    known = []
    for record, source, count in merged.values():
        known.append(record.start_known)
        rows.append(
            {
                "fingerprint": record.fingerprint,
                "source": source,
                "status": record.status,
                "labels": record.labels,
                "annotations": record.annotations,
                "starts_at": record.starts_at,
                "ends_at": record.ends_at,
                "state_at": record.state_at,
                "generator_url": record.generator_url,
                "group_key": record.group_key,
                "severity": record.severity,
                "service": record.service,
                "first_received": now,
                "last_received": now,
                "receive_count": count,
                "extra": record.extra,
                "ignored_by": record.ignored_by,
            }
        )
    return rows, known


def alert_upsert(conn: Connection, start_known: bool) -> Any:
    """The SQLAlchemy upsert of alert rows, for rows whose start is known or not."""
    insert_fn = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert_fn(ALERTS)
    ex = stmt.excluded
    cur = ALERTS.c
    newer: ColumnElement[bool] = or_(
        ex.state_at > cur.state_at,
        and_(
            ex.state_at == cur.state_at,
            not_(and_(cur.status == AlertStatus.RESOLVED, ex.status == AlertStatus.FIRING)),
        ),
    )
    continuing = and_(newer, cur.status == AlertStatus.FIRING, ex.status == AlertStatus.FIRING)
    earliest_start = case((ex.starts_at < cur.starts_at, ex.starts_at), else_=cur.starts_at)
    takes_start = (
        newer
        if start_known
        else and_(newer, cur.status == AlertStatus.RESOLVED, ex.status == AlertStatus.FIRING)
    )
    set_: dict[str, Any] = {
        name: case((newer, ex[name]), else_=cur[name]) for name in STATE_COLUMNS
    }
    set_["starts_at"] = case(
        (continuing, earliest_start), (takes_start, ex.starts_at), else_=cur.starts_at
    )
    set_["state_at"] = case((continuing, earliest_start), (newer, ex.state_at), else_=cur.state_at)
    set_["last_received"] = case(
        (ex.last_received > cur.last_received, ex.last_received), else_=cur.last_received
    )
    set_["receive_count"] = cur.receive_count + ex.receive_count
    return stmt.on_conflict_do_update(index_elements=[cur.fingerprint], set_=set_)


# The same rule in PostgreSQL, written out once: every column comes as an array (unnest).
_PG_NEWER = """(EXCLUDED.state_at > alerts.state_at OR (EXCLUDED.state_at = alerts.state_at
    AND NOT (alerts.status = 'resolved' AND EXCLUDED.status = 'firing')))"""
_PG_CONTINUING = f"({_PG_NEWER} AND alerts.status = 'firing' AND EXCLUDED.status = 'firing')"
_PG_NEW_EPISODE = f"({_PG_NEWER} AND alerts.status = 'resolved' AND EXCLUDED.status = 'firing')"
_PG_EARLIEST = "LEAST(EXCLUDED.starts_at, alerts.starts_at)"


def _pg_pick(column: str) -> str:
    return f"{column} = CASE WHEN {_PG_NEWER} THEN EXCLUDED.{column} ELSE alerts.{column} END"


def _pg_alerts(start_known: bool) -> str:
    takes_start = _PG_NEWER if start_known else _PG_NEW_EPISODE
    return f"""
INSERT INTO alerts (fingerprint, source, status, labels, annotations, starts_at, ends_at,
    state_at, generator_url, group_key, severity, service, first_received, last_received,
    receive_count, extra, ignored_by)
SELECT f, src, st, l::jsonb, a::jsonb, sa, ea, sta, gu, gk, sev, svc, %(now)b, %(now)b, n,
    x::jsonb, ign
FROM unnest(%(fingerprint)b::text[], %(source)b::text[], %(status)b::text[],
    %(labels)b::text[], %(annotations)b::text[], %(starts_at)b::timestamptz[],
    %(ends_at)b::timestamptz[], %(state_at)b::timestamptz[], %(generator_url)b::text[],
    %(group_key)b::text[], %(severity)b::text[], %(service)b::text[], %(count)b::int[],
    %(extra)b::text[], %(ignored_by)b::text[])
    AS t(f, src, st, l, a, sa, ea, sta, gu, gk, sev, svc, n, x, ign)
ON CONFLICT (fingerprint) DO UPDATE SET
    {", ".join(_pg_pick(c) for c in STATE_COLUMNS)},
    starts_at = CASE WHEN {_PG_CONTINUING} THEN {_PG_EARLIEST}
        WHEN {takes_start} THEN EXCLUDED.starts_at ELSE alerts.starts_at END,
    state_at = CASE WHEN {_PG_CONTINUING} THEN {_PG_EARLIEST}
        WHEN {_PG_NEWER} THEN EXCLUDED.state_at ELSE alerts.state_at END,
    last_received = GREATEST(alerts.last_received, EXCLUDED.last_received),
    receive_count = alerts.receive_count + EXCLUDED.receive_count
"""


PG_ALERTS = {True: _pg_alerts(True), False: _pg_alerts(False)}
