"""What the database itself can do: a plain psycopg batch upsert of alert rows, one commit each.

The scratch table has the columns and indexes of `alerts`. Each batch of rows goes in with
`cursor.executemany()` of one `INSERT ... ON CONFLICT (fingerprint) DO UPDATE`, which
psycopg 3 sends as a pipeline (one round trip), then one commit. That is the fastest plain
way: a single multi-row VALUES statement of 100 rows has 1,600 parameters, longer than the
4,096 characters up to which psycopg caches the parsing of a query, and reaches only about
half the rate here. The service's figure is read as a fraction of this one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb, set_json_dumps

TABLE = "bench_raw_alerts"
DDL = (
    f"DROP TABLE IF EXISTS {TABLE}",
    f"""CREATE TABLE {TABLE} (
        id bigserial PRIMARY KEY,
        fingerprint varchar(128) NOT NULL UNIQUE,
        source varchar(32) NOT NULL,
        status varchar(16) NOT NULL,
        labels jsonb NOT NULL,
        annotations jsonb NOT NULL,
        starts_at timestamptz NOT NULL,
        ends_at timestamptz,
        state_at timestamptz NOT NULL,
        generator_url text,
        group_key text,
        severity varchar(2) NOT NULL,
        service varchar(255),
        first_received timestamptz NOT NULL,
        last_received timestamptz NOT NULL,
        receive_count integer NOT NULL,
        extra jsonb NOT NULL
    )""",
    f"CREATE INDEX ix_{TABLE}_status_severity ON {TABLE} (status, severity)",
    f"CREATE INDEX ix_{TABLE}_service ON {TABLE} (service)",
)
COLUMNS = (
    "fingerprint",
    "source",
    "status",
    "labels",
    "annotations",
    "starts_at",
    "ends_at",
    "state_at",
    "generator_url",
    "group_key",
    "severity",
    "service",
    "first_received",
    "last_received",
    "receive_count",
    "extra",
)
UPSERT_SET = (
    "status = EXCLUDED.status, labels = EXCLUDED.labels, annotations = EXCLUDED.annotations,"
    " ends_at = EXCLUDED.ends_at, state_at = EXCLUDED.state_at,"
    f" last_received = GREATEST({TABLE}.last_received, EXCLUDED.last_received),"
    f" receive_count = {TABLE}.receive_count + EXCLUDED.receive_count"
)
SEVERITY = {"critical": "P0", "error": "P1", "warning": "P2", "info": "P3"}

Batch = list[tuple[Any, ...]]  # the rows of one transaction


def _row(alert: dict[str, Any], now: datetime) -> tuple[Any, ...]:
    labels = alert["labels"]
    starts_at = datetime.fromisoformat(alert["startsAt"])
    return (
        alert["fingerprint"],
        "alertmanager",
        alert["status"],
        Jsonb(labels),
        Jsonb(alert["annotations"]),
        starts_at,
        None,
        starts_at,
        alert["generatorURL"],
        '{}:{alertname="' + labels["alertname"] + '"}',
        SEVERITY.get(labels.get("severity", ""), "P3"),
        labels.get("service"),
        now,
        now,
        1,
        Jsonb({}),
    )


def make_batches(alerts: Sequence[dict[str, Any]], per_batch: int) -> list[Batch]:
    """The rows of one transaction per `per_batch` alerts, built before timing starts."""
    now = datetime.now(UTC)
    return [
        [_row(alert, now) for alert in alerts[at : at + per_batch]]
        for at in range(0, len(alerts), per_batch)
    ]


UPSERT = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    f" ON CONFLICT (fingerprint) DO UPDATE SET {UPSERT_SET}"
)


@dataclass
class RawResult:
    """Rows written, how long it took, and the time of each batch (statement + commit)."""

    rows: int = 0
    batches: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Rows per second."""
        return self.rows / self.elapsed if self.elapsed else 0.0


def create_table(url: str) -> None:
    """(Re)create the scratch table."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in DDL:
            conn.execute(statement)


def count_rows(url: str) -> int:
    """Rows in the scratch table."""
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        return int(row[0]) if row else 0


def upsert_rate(url: str, batches: Sequence[Batch], *, duration: float) -> RawResult:
    """Upsert batch after batch, one commit each, until all are written or time is up."""
    result = RawResult()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        set_json_dumps(orjson.dumps, context=conn)
        started = time.perf_counter()
        deadline = started + duration
        for rows in batches:
            begun = time.perf_counter()
            if begun >= deadline:
                break
            cur.executemany(UPSERT, rows)
            conn.commit()
            result.latencies.append(time.perf_counter() - begun)
            result.rows += len(rows)
            result.batches += 1
        result.elapsed = time.perf_counter() - started
    return result
