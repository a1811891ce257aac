"""The durable write of accepted deliveries: one transaction, a few batched statements.

Everything a group of requests brings (raw bodies, alert upserts and the pipeline's
outbox row) goes in together, so a request is answered 2xx only once all of it is
committed, and a failure leaves nothing half-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, insert, not_, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.expression import ColumnElement

from incidents.ingest.adapters import AlertRecord, Parsed
from incidents.models import Alert, DeliveryKey, PipelineJob, WebhookDelivery

ALERTS = Alert.__table__  # type: ignore[attr-defined]
DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
KEYS = DeliveryKey.__table__  # type: ignore[attr-defined]
JOBS = PipelineJob.__table__  # type: ignore[attr-defined]

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
    insert_fn = _dialect_insert(conn)
    keys_in_order: dict[str, None] = {}
    for item in batch:
        keys_in_order.setdefault(item.parsed.dedup_key, None)
    cutoff = now - timedelta(seconds=duplicate_window)
    key_stmt = insert_fn(KEYS).values([{"key": k, "seen_at": now} for k in keys_in_order])
    key_stmt = key_stmt.on_conflict_do_update(
        index_elements=[KEYS.c.key],
        set_={"seen_at": key_stmt.excluded.seen_at},
        where=KEYS.c.seen_at < cutoff,
    ).returning(KEYS.c.key)
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
