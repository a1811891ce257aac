"""The durable write of accepted deliveries: one transaction, a few batched statements.

Everything a group of requests brings (raw bodies, alert upserts and the pipeline's
outbox row) goes in together, so a request is answered 2xx only once all of it is
committed, and a failure leaves nothing half-written.

A delivery whose content was seen within the duplicate window (an Alertmanager retry,
the second member of an HA pair) is only a candidate duplicate: it is skipped when it
would change no alert's state, and applied otherwise. A state change is never a
duplicate, whatever the window says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, LargeBinary, Text, bindparam, cast, insert, select
from sqlalchemy.dialects import sqlite

from incidents.ingest.adapters import AlertRecord, Parsed
from incidents.ingest.upsert import PG_ALERTS, alert_upsert, merge_rows, wins
from incidents.models import ALERTS, DELIVERIES, DELIVERY_KEYS, JOBS
from incidents.vocab import JobStatus

# Fingerprints per IN list when reading stored states (SQLite allows 32,766 parameters).
_READ_CHUNK = 10_000
# Rows per upsert statement: a storm's rows go in several statements of one transaction,
# so the encoded parameters of only one of them are in memory at a time.
_WRITE_CHUNK = 5_000
# Bodies above this size go in a statement each, as a plain parameter: in an array
# they would be copied once more while the array is encoded.
_LARGE_BODY = 1024 * 1024


@dataclass(slots=True)
class Incoming:
    """One accepted request waiting to be written."""

    parsed: Parsed
    body: bytes  # UTF-8 JSON as it arrived (decoded, if it came compressed)
    request_id: str | None


@dataclass(slots=True)
class WriteResult:
    """What the write did with one request."""

    alerts: int
    duplicate: bool
    job_id: int | None


Stored = dict[str, tuple[str, datetime]]


def _changes(record: AlertRecord, known: Stored) -> bool:
    """True when writing `record` would change the alert's status."""
    state = known.get(record.fingerprint)
    if state is None:
        return True
    status, state_at = state
    return record.status != status and wins(record, status, state_at)


def _candidates(batch: list[Incoming], fresh: set[str]) -> set[str]:
    """Fingerprints of the requests that may be duplicates (their key was seen)."""
    seen: set[str] = set()
    out: set[str] = set()
    for item in batch:
        key = item.parsed.dedup_key
        if key not in fresh or key in seen:
            out.update(r.fingerprint for r in item.parsed.alerts)
        seen.add(key)
    return out


def _decide(
    batch: list[Incoming], fresh: set[str], watched: set[str], known: Stored
) -> tuple[list[bool], list[tuple[AlertRecord, str]]]:
    """Which requests are duplicates, and the records to store, in arrival order.

    `known` holds the stored state of the `watched` fingerprints (those of candidates).
    """
    fresh = set(fresh)
    duplicates: list[bool] = []
    to_store: list[tuple[AlertRecord, str]] = []
    for item in batch:
        key = item.parsed.dedup_key
        if key in fresh:
            fresh.discard(key)  # a second copy within this batch is only a candidate
            apply = True
        else:
            apply = any(_changes(r, known) for r in item.parsed.alerts)
        if apply:
            to_store.extend((r, item.parsed.source) for r in item.parsed.alerts)
            if watched:
                # Later candidates in this batch compare with the state this one leaves.
                for r in item.parsed.alerts:
                    if r.fingerprint not in watched:
                        continue
                    state = known.get(r.fingerprint)
                    if state is None or wins(r, *state):
                        known[r.fingerprint] = (r.status, r.state_at)
        duplicates.append(not apply)
    return duplicates, to_store


def _statements(
    rows: list[dict[str, Any]], start_known: list[bool]
) -> Iterable[tuple[bool, list[dict[str, Any]]]]:
    """The rows by upsert statement: rows with and without a known start, in chunks."""
    if len(rows) <= _WRITE_CHUNK and all(start_known):
        yield True, rows  # the common case: one statement
        return
    for known in (True, False):
        part = [r for r, k in zip(rows, start_known, strict=True) if k is known]
        for at in range(0, len(part), _WRITE_CHUNK):
            yield known, part[at : at + _WRITE_CHUNK]


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for at in range(0, len(values), _READ_CHUNK):
        yield values[at : at + _READ_CHUNK]


def write_batch(
    conn: Connection, batch: list[Incoming], now: datetime, duplicate_window: float
) -> list[WriteResult]:
    """Write a group of requests in the caller's transaction; return one result each."""
    if conn.dialect.name == "postgresql":
        return _write_batch_pg(conn, batch, now, duplicate_window)
    keys_in_order: dict[str, None] = {}
    for item in batch:
        keys_in_order.setdefault(item.parsed.dedup_key, None)
    cutoff = now - timedelta(seconds=duplicate_window)
    key_stmt: Any = sqlite.insert(DELIVERY_KEYS).values(
        [{"key": k, "seen_at": now} for k in keys_in_order]
    )
    key_stmt = key_stmt.on_conflict_do_update(
        index_elements=[DELIVERY_KEYS.c.key],
        set_={"seen_at": key_stmt.excluded.seen_at},
        where=DELIVERY_KEYS.c.seen_at < cutoff,
    ).returning(DELIVERY_KEYS.c.key)
    fresh = set(conn.execute(key_stmt).scalars())
    known: Stored = {}
    watched = _candidates(batch, fresh)
    for chunk in _chunks(sorted(watched)):
        query = select(ALERTS.c.fingerprint, ALERTS.c.status, ALERTS.c.state_at).where(
            ALERTS.c.fingerprint.in_(chunk)
        )
        known.update((f, (s, t)) for f, s, t in conn.execute(query))
    duplicates, to_store = _decide(batch, fresh, watched, known)

    conn.execute(
        insert(DELIVERIES).values(body=cast(bindparam("raw_body", type_=LargeBinary), Text)),
        [
            {
                "source": item.parsed.source,
                "received_at": now,
                "dedup_key": item.parsed.dedup_key,
                "duplicate": dup,
                "alert_count": len(item.parsed.alerts),
                "request_id": item.request_id,
                "group_key": item.parsed.group_key,
                "raw_body": item.body,
            }
            for item, dup in zip(batch, duplicates, strict=True)
        ],
    )

    job_id: int | None = None
    rows, start_known = merge_rows(to_store, now)
    if rows:
        for known_start, part in _statements(rows, start_known):
            conn.execute(alert_upsert(conn, known_start), part)
        job_id = conn.execute(
            insert(JOBS)
            .values(
                created_at=now,
                fingerprints=[r["fingerprint"] for r in rows],
                status=JobStatus.PENDING,
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
# more than everything else here for bodies of a few kilobytes. Bodies go as bytea and
# become text in the server, so no decoded copy of a large body is made here.
_PG_KEYS = """
INSERT INTO delivery_keys (key, seen_at)
SELECT k, %(now)b FROM unnest(%(keys)b::text[]) AS k
ON CONFLICT (key) DO UPDATE SET seen_at = EXCLUDED.seen_at
WHERE delivery_keys.seen_at < %(cutoff)b
RETURNING key
"""

_PG_STORED = """
SELECT fingerprint, status, state_at FROM alerts WHERE fingerprint = ANY(%(fingerprints)b::text[])
"""

_PG_DELIVERIES = """
INSERT INTO webhook_deliveries
    (source, received_at, dedup_key, duplicate, alert_count, request_id, group_key, body)
SELECT s, %(now)b, k, d, n, r, g, convert_from(b, 'UTF8')
FROM unnest(%(source)b::text[], %(key)b::text[], %(duplicate)b::bool[], %(count)b::int[],
            %(request)b::text[], %(group)b::text[], %(body)b::bytea[]) AS t(s, k, d, n, r, g, b)
"""

_PG_DELIVERY = """
INSERT INTO webhook_deliveries
    (source, received_at, dedup_key, duplicate, alert_count, request_id, group_key, body)
VALUES (%(source)b, %(now)b, %(key)b, %(duplicate)b, %(count)b, %(request)b, %(group)b,
    convert_from(%(body)b, 'UTF8'))
"""

_PG_JOB = """
INSERT INTO pipeline_jobs (created_at, fingerprints, status, attempts)
VALUES (%(now)b, %(fingerprints)b::jsonb, 'pending', 0)
RETURNING id
"""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _pg_alert_params(rows: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    return {
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
    }


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
    known: Stored = {}
    watched = _candidates(batch, fresh)
    if watched:
        cursor.execute(_PG_STORED, {"fingerprints": list(watched)})
        known.update((f, (s, t)) for f, s, t in cursor.fetchall())
    duplicates, to_store = _decide(batch, fresh, watched, known)
    pairs = list(zip(batch, duplicates, strict=True))
    small = [p for p in pairs if len(p[0].body) <= _LARGE_BODY]
    if small:
        cursor.execute(
            _PG_DELIVERIES,
            {
                "now": now,
                "source": [item.parsed.source for item, _ in small],
                "key": [item.parsed.dedup_key for item, _ in small],
                "duplicate": [dup for _, dup in small],
                "count": [len(item.parsed.alerts) for item, _ in small],
                "request": [item.request_id for item, _ in small],
                "group": [item.parsed.group_key for item, _ in small],
                "body": [item.body for item, _ in small],
            },
        )
    for item, dup in pairs if len(small) < len(pairs) else ():
        if len(item.body) > _LARGE_BODY:
            cursor.execute(
                _PG_DELIVERY,
                {
                    "now": now,
                    "source": item.parsed.source,
                    "key": item.parsed.dedup_key,
                    "duplicate": dup,
                    "count": len(item.parsed.alerts),
                    "request": item.request_id,
                    "group": item.parsed.group_key,
                    "body": item.body,
                },
            )
    job_id: int | None = None
    rows, start_known = merge_rows(to_store, now)
    if rows:
        for known_start, part in _statements(rows, start_known):
            cursor.execute(PG_ALERTS[known_start], _pg_alert_params(part, now))
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
