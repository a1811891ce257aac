"""Builders of realistic payloads for tests and benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from incidents.ingest.fingerprint import label_fingerprint

GO_ZERO = "0001-01-01T00:00:00Z"


def iso(t: datetime) -> str:
    """RFC 3339 in UTC as Alertmanager writes it."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def am_alert(
    labels: dict[str, str],
    *,
    status: str = "firing",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One alert as it appears inside an Alertmanager webhook."""
    start = starts_at or datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    end = ends_at if ends_at is not None else (start + timedelta(minutes=5))
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations or {"summary": f"{labels.get('alertname', 'alert')} fired"},
        "startsAt": iso(start),
        "endsAt": iso(end) if status == "resolved" else GO_ZERO,
        "generatorURL": "http://prometheus.example:9090/graph",
        "fingerprint": label_fingerprint(labels),
    }


def am_payload(alerts: list[dict[str, Any]], *, receiver: str = "incidents") -> dict[str, Any]:
    """An Alertmanager webhook body (version 4) around the given alerts."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    common = dict(alerts[0]["labels"]) if alerts else {}
    for alert in alerts[1:]:
        common = {k: v for k, v in common.items() if alert["labels"].get(k) == v}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="' + common.get("alertname", "") + '"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": common.get("alertname", "")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


def stored_alert(
    labels: dict[str, str],
    *,
    service: str | None,
    severity: str,
    starts_at: datetime,
    received: datetime,
    status: str = "firing",
    ends_at: datetime | None = None,
) -> Any:
    """An alert row as ingestion would have written it (for tests that drive the pipeline)."""
    from incidents.models import Alert

    return Alert(
        fingerprint=label_fingerprint(labels),
        source="alertmanager",
        status=status,
        labels=labels,
        annotations={},
        starts_at=starts_at,
        ends_at=ends_at,
        state_at=ends_at or starts_at,
        severity=severity,
        service=service,
        first_received=received,
        last_received=received,
        receive_count=1,
        extra={},
    )
