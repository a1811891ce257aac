"""What the database itself can do: a plain psycopg batch upsert of alert rows, one commit each.

The scratch table has the columns and indexes of `alerts`; each batch is one multi-row
`INSERT ... ON CONFLICT (fingerprint) DO UPDATE` followed by a commit, which is the shape
the design asks the service to use. The service's figure is read as a fraction of this one.
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

Batch = list[Any]  # the flattened parameters of one multi-row statement


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
    """The parameters of one statement per `per_batch` alerts, built before timing starts."""
    now = datetime.now(UTC)
    out = []
    for at in range(0, len(alerts), per_batch):
        params: Batch = []
        for alert in alerts[at : at + per_batch]:
            params.extend(_row(alert, now))
        out.append(params)
    return out


def _statement(rows: int) -> str:
    one = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
    return (
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
        + ", ".join([one] * rows)
        + f" ON CONFLICT (fingerprint) DO UPDATE SET {UPSERT_SET}"
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
    width = len(COLUMNS)
    statements: dict[int, str] = {}
    with psycopg.connect(url) as conn:
        set_json_dumps(orjson.dumps, context=conn)
        started = time.perf_counter()
        deadline = started + duration
        for params in batches:
            begun = time.perf_counter()
            if begun >= deadline:
                break
            rows = len(params) // width
            sql = statements.get(rows) or statements.setdefault(rows, _statement(rows))
            conn.execute(sql, params, prepare=True)
            conn.commit()
            result.latencies.append(time.perf_counter() - begun)
            result.rows += rows
            result.batches += 1
        result.elapsed = time.perf_counter() - started
    return result
