"""The synthetic alert of a missed heartbeat, stored through the webhook's own write path.

It is written by `ingest.store.write_batch`, like a delivery: the alert upsert, a
`webhook_deliveries` row (source `heartbeat`) and a pipeline job in the caller's
transaction. So the incident it opens is correlated, muted, routed and paged like any
other, and its resolve closes that incident through the pipeline too.

Its fingerprint depends on the heartbeat's name only: a change of the heartbeat's
severity or service while it is missed still resolves the alert that was stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.config import IngestSettings
from incidents.ingest.adapters import AlertRecord, Parsed
from incidents.ingest.classify import ignore_reason
from incidents.ingest.fingerprint import content_key, label_fingerprint
from incidents.ingest.store import Incoming, write_batch
from incidents.models import ALERTS
from incidents.vocab import AlertStatus

from .spec import Heartbeat, spoken

SOURCE: Final = "heartbeat"
ALERTNAME: Final = "HeartbeatMissing"


def fingerprint_of(name: str) -> str:
    """The synthetic alert's fingerprint for a heartbeat."""
    return label_fingerprint({"alertname": ALERTNAME, "heartbeat": name})


def missing(
    heartbeat: Heartbeat, missed_at: datetime, elapsed: timedelta, ingest: IngestSettings
) -> AlertRecord:
    """The firing alert of a heartbeat missed at `missed_at`, `elapsed` after its last ping."""
    spec = heartbeat.spec
    labels = {
        "alertname": ALERTNAME,
        "heartbeat": spec.name,
        "severity": spec.severity,
        "service": spec.service,
    }
    title = heartbeat.title(elapsed)
    annotations = {
        "summary": title,
        "description": (
            f"Heartbeat {spec.name} expects a ping every {spec.interval} (grace {spec.grace}); "
            f"none has arrived for {spoken(elapsed)}."
        ),
    }
    return AlertRecord(
        fingerprint=fingerprint_of(spec.name),
        status=AlertStatus.FIRING,
        labels=labels,
        annotations=annotations,
        starts_at=missed_at,
        ends_at=None,
        state_at=missed_at,
        generator_url=None,
        group_key=None,
        severity=spec.severity,
        service=spec.service,
        ignored_by=ignore_reason(labels, ingest),
    )


def resolves(session: Session, names: list[str], now: datetime) -> list[AlertRecord]:
    """The resolves of these heartbeats' synthetic alerts that are still firing."""
    wanted = {fingerprint_of(n): n for n in names}
    if not wanted:
        return []
    out = []
    for row in session.execute(
        select(
            ALERTS.c.fingerprint,
            ALERTS.c.labels,
            ALERTS.c.annotations,
            ALERTS.c.starts_at,
            ALERTS.c.severity,
            ALERTS.c.service,
            ALERTS.c.ignored_by,
        )
        .where(ALERTS.c.fingerprint.in_(sorted(wanted)))
        .where(ALERTS.c.status == AlertStatus.FIRING)
    ):
        ends_at = max(now, row.starts_at)
        out.append(
            AlertRecord(
                fingerprint=row.fingerprint,
                status=AlertStatus.RESOLVED,
                labels=dict(row.labels),
                annotations=dict(row.annotations),
                starts_at=row.starts_at,
                ends_at=ends_at,
                state_at=ends_at,
                generator_url=None,
                group_key=None,
                severity=row.severity,
                service=row.service,
                ignored_by=row.ignored_by,
            )
        )
    return out


def _wire(record: AlertRecord) -> dict[str, Any]:
    """The alert in the generic format: what the delivery row keeps as its body."""
    return {
        "fingerprint": record.fingerprint,
        "status": record.status,
        "labels": record.labels,
        "annotations": record.annotations,
        "startsAt": record.starts_at.isoformat(),
        "endsAt": record.ends_at.isoformat() if record.ends_at else None,
    }


def write(
    session: Session, records: list[AlertRecord], now: datetime, ingest: IngestSettings
) -> int | None:
    """Store the alerts as one delivery in the session's transaction; return the pipeline
    job to hand out once it commits (None when there was nothing to store)."""
    if not records:
        return None
    wire = [_wire(r) for r in records]
    fields = ("fingerprint", "status", "labels", "annotations", "startsAt")
    identities = sorted(([w[f] for f in fields] for w in wire), key=lambda i: (i[0], i[1]))
    parsed = Parsed(source=SOURCE, alerts=records, dedup_key=content_key([SOURCE], identities))
    body = orjson.dumps({"alerts": wire})
    [result] = write_batch(
        session.connection(),
        [Incoming(parsed=parsed, body=body, request_id=None)],
        now,
        ingest.duplicate_window_seconds,
    )
    return result.job_id
