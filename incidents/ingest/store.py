"""The durable write of accepted deliveries: one transaction, a few batched statements.

Everything a group of requests brings (raw bodies, alert upserts and the pipeline's
outbox row) goes in together, so a request is answered 2xx only once all of it is
committed, and a failure leaves nothing half-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, and_, case, insert, not_, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.expression import ColumnElement

from incidents.ingest.adapters import AlertRecord, Parsed
from incidents.models import (
    ALERTS,
    DELIVERIES,
    DELIVERY_KEYS,
    JOBS,
)

_STATE_COLUMNS = (
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


@dataclass(slots=True)
class Incoming:
    """One accepted request waiting to be written."""

    parsed: Parsed
    body: str
    request_id: str | None


@dataclass(slots=True)
class WriteResult:
    """What the write did with one request."""

    alerts: int
    duplicate: bool
    job_id: int | None


def _dialect_insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _newer_wins(record: AlertRecord, current: AlertRecord) -> bool:
    """The same rule as the SQL upsert, for alerts repeated within one batch."""
    if record.state_at != current.state_at:
        return record.state_at > current.state_at
    return not (current.status == "resolved" and record.status == "firing")


def _merge(records: list[tuple[AlertRecord, str]], now: datetime) -> list[dict[str, Any]]:
    """Fold repeats of a fingerprint within one batch into one row (PostgreSQL needs that)."""
    merged: dict[str, tuple[AlertRecord, str, int]] = {}
    for record, source in records:
        seen = merged.get(record.fingerprint)
        if seen is None:
            merged[record.fingerprint] = (record, source, 1)
            continue
        current, current_source, count = seen
        if _newer_wins(record, current):
            if current.status == "firing" and record.status == "firing":
                record.starts_at = min(record.starts_at, current.starts_at)
                record.state_at = record.starts_at
            merged[record.fingerprint] = (record, source, count + 1)
        else:
            merged[record.fingerprint] = (current, current_source, count + 1)
    rows = []
    for record, source, count in merged.values():
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
    return rows


def _alert_upsert(conn: Connection) -> Any:
    stmt = _dialect_insert(conn)(ALERTS)
    ex = stmt.excluded
    cur = ALERTS.c
    newer: ColumnElement[bool] = or_(
        ex.state_at > cur.state_at,
        and_(
            ex.state_at == cur.state_at,
            not_(and_(cur.status == "resolved", ex.status == "firing")),
        ),
    )
    # A firing alert re-sent while it still fires keeps the earliest start we saw.
    continuing = and_(newer, cur.status == "firing", ex.status == "firing")
    earliest_start = case((ex.starts_at < cur.starts_at, ex.starts_at), else_=cur.starts_at)
    set_: dict[str, Any] = {
        name: case((newer, ex[name]), else_=cur[name]) for name in _STATE_COLUMNS
    }
    set_["starts_at"] = case(
        (continuing, earliest_start), (newer, ex.starts_at), else_=cur.starts_at
    )
    set_["state_at"] = case((continuing, earliest_start), (newer, ex.state_at), else_=cur.state_at)
    set_["last_received"] = case(
        (ex.last_received > cur.last_received, ex.last_received), else_=cur.last_received
    )
    set_["receive_count"] = cur.receive_count + ex.receive_count
    return stmt.on_conflict_do_update(index_elements=[cur.fingerprint], set_=set_)


def write_batch(
    conn: Connection, batch: list[Incoming], now: datetime, duplicate_window: float
) -> list[WriteResult]:
    """Write a group of requests in the caller's transaction; return one result each."""
    if conn.dialect.name == "postgresql":
        return _write_batch_pg(conn, batch, now, duplicate_window)
    insert_fn = _dialect_insert(conn)
    keys_in_order: dict[str, None] = {}
    for item in batch:
        keys_in_order.setdefault(item.parsed.dedup_key, None)
    cutoff = now - timedelta(seconds=duplicate_window)
    key_stmt = insert_fn(DELIVERY_KEYS).values([{"key": k, "seen_at": now} for k in keys_in_order])
    key_stmt = key_stmt.on_conflict_do_update(
        index_elements=[DELIVERY_KEYS.c.key],
        set_={"seen_at": key_stmt.excluded.seen_at},
        where=DELIVERY_KEYS.c.seen_at < cutoff,
    ).returning(DELIVERY_KEYS.c.key)
    fresh = set(conn.execute(key_stmt).scalars())

    duplicates: list[bool] = []
    to_store: list[tuple[AlertRecord, str]] = []
    for item in batch:
        key = item.parsed.dedup_key
        is_new = key in fresh
        if is_new:
            fresh.discard(key)  # a second copy within this batch is a duplicate
            to_store.extend((r, item.parsed.source) for r in item.parsed.alerts)
        duplicates.append(not is_new)

    conn.execute(
        insert(DELIVERIES),
        [
            {
                "source": item.parsed.source,
                "received_at": now,
                "dedup_key": item.parsed.dedup_key,
                "duplicate": dup,
                "alert_count": len(item.parsed.alerts),
                "request_id": item.request_id,
                "group_key": item.parsed.group_key,
                "body": item.body,
            }
            for item, dup in zip(batch, duplicates, strict=True)
        ],
    )

    job_id: int | None = None
    rows = _merge(to_store, now)
    if rows:
        conn.execute(_alert_upsert(conn), rows)
        job_id = conn.execute(
            insert(JOBS)
            .values(
                created_at=now,
                fingerprints=[r["fingerprint"] for r in rows],
                status="pending",
                attempts=0,
            )
            .returning(JOBS.c.id)
        ).scalar_one()
    return [
        WriteResult(
            alerts=len(item.parsed.alerts),
            duplicate=dup,
            job_id=None if dup else job_id,
        )
        for item, dup in zip(batch, duplicates, strict=True)
    ]


# PostgreSQL hot path: every statement takes whole columns as arrays (unnest), so a batch
# costs four round trips and no per-row work in the ORM. Parameters go in binary (%b):
# the text format escapes every array element with a regular expression, which cost
# more than everything else here for bodies of a few kilobytes. The upsert rule is the same as
# _alert_upsert's, written out once.
_PG_KEYS = """
INSERT INTO delivery_keys (key, seen_at)
SELECT k, %(now)b FROM unnest(%(keys)b::text[]) AS k
ON CONFLICT (key) DO UPDATE SET seen_at = EXCLUDED.seen_at
WHERE delivery_keys.seen_at < %(cutoff)b
RETURNING key
"""

_PG_DELIVERIES = """
INSERT INTO webhook_deliveries
    (source, received_at, dedup_key, duplicate, alert_count, request_id, group_key, body)
SELECT s, %(now)b, k, d, n, r, g, b
FROM unnest(%(source)b::text[], %(key)b::text[], %(duplicate)b::bool[], %(count)b::int[],
            %(request)b::text[], %(group)b::text[], %(body)b::text[]) AS t(s, k, d, n, r, g, b)
"""

_PG_NEWER = """(EXCLUDED.state_at > alerts.state_at OR (EXCLUDED.state_at = alerts.state_at
    AND NOT (alerts.status = 'resolved' AND EXCLUDED.status = 'firing')))"""
_PG_CONTINUING = f"({_PG_NEWER} AND alerts.status = 'firing' AND EXCLUDED.status = 'firing')"
_PG_EARLIEST = "LEAST(EXCLUDED.starts_at, alerts.starts_at)"


def _pg_pick(column: str) -> str:
    return f"{column} = CASE WHEN {_PG_NEWER} THEN EXCLUDED.{column} ELSE alerts.{column} END"


_PG_ALERTS = f"""
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
    {", ".join(_pg_pick(c) for c in _STATE_COLUMNS)},
    starts_at = CASE WHEN {_PG_CONTINUING} THEN {_PG_EARLIEST}
        WHEN {_PG_NEWER} THEN EXCLUDED.starts_at ELSE alerts.starts_at END,
    state_at = CASE WHEN {_PG_CONTINUING} THEN {_PG_EARLIEST}
        WHEN {_PG_NEWER} THEN EXCLUDED.state_at ELSE alerts.state_at END,
    last_received = GREATEST(alerts.last_received, EXCLUDED.last_received),
    receive_count = alerts.receive_count + EXCLUDED.receive_count
"""

_PG_JOB = """
INSERT INTO pipeline_jobs (created_at, fingerprints, status, attempts)
VALUES (%(now)b, %(fingerprints)b::jsonb, 'pending', 0)
RETURNING id
"""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _write_batch_pg(
    conn: Connection, batch: list[Incoming], now: datetime, duplicate_window: float
) -> list[WriteResult]:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    keys = list(dict.fromkeys(item.parsed.dedup_key for item in batch))
    cursor.execute(
        _PG_KEYS,
        {"now": now, "keys": keys, "cutoff": now - timedelta(seconds=duplicate_window)},
    )
    fresh = {row[0] for row in cursor.fetchall()}
    duplicates: list[bool] = []
    to_store: list[tuple[AlertRecord, str]] = []
    for item in batch:
        key = item.parsed.dedup_key
        is_new = key in fresh
        if is_new:
            fresh.discard(key)
            to_store.extend((r, item.parsed.source) for r in item.parsed.alerts)
        duplicates.append(not is_new)
    cursor.execute(
        _PG_DELIVERIES,
        {
            "now": now,
            "source": [item.parsed.source for item in batch],
            "key": [item.parsed.dedup_key for item in batch],
            "duplicate": duplicates,
            "count": [len(item.parsed.alerts) for item in batch],
            "request": [item.request_id for item in batch],
            "group": [item.parsed.group_key for item in batch],
            "body": [item.body for item in batch],
        },
    )
    job_id: int | None = None
    rows = _merge(to_store, now)
    if rows:
        cursor.execute(
            _PG_ALERTS,
            {
                "now": now,
                "fingerprint": [r["fingerprint"] for r in rows],
                "source": [r["source"] for r in rows],
                "status": [r["status"] for r in rows],
                "labels": [_json(r["labels"]) for r in rows],
                "annotations": [_json(r["annotations"]) for r in rows],
                "starts_at": [r["starts_at"] for r in rows],
                "ends_at": [r["ends_at"] for r in rows],
                "state_at": [r["state_at"] for r in rows],
                "generator_url": [r["generator_url"] for r in rows],
                "group_key": [r["group_key"] for r in rows],
                "severity": [r["severity"] for r in rows],
                "service": [r["service"] for r in rows],
                "count": [r["receive_count"] for r in rows],
                "extra": [_json(r["extra"]) for r in rows],
                "ignored_by": [r["ignored_by"] for r in rows],
            },
        )
        cursor.execute(
            _PG_JOB, {"now": now, "fingerprints": _json([r["fingerprint"] for r in rows])}
        )
        fetched = cursor.fetchone()
        assert fetched is not None
        job_id = int(fetched[0])
    cursor.close()
    return [
        WriteResult(alerts=len(item.parsed.alerts), duplicate=dup, job_id=None if dup else job_id)
        for item, dup in zip(batch, duplicates, strict=True)
    ]
