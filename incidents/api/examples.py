"""Example bodies that the OpenAPI document shows; tests check that the service accepts them."""

from __future__ import annotations

from typing import Any

# The same body as examples/alertmanager-webhook.json (a test keeps the two equal).
ALERTMANAGER_WEBHOOK: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "incidents",
    "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": {
        "alertname": "HighErrorRate",
        "severity": "critical",
        "service": "api-gateway",
    },
    "commonAnnotations": {"summary": "5xx rate above 5% for 5 minutes"},
    "externalURL": "http://alertmanager.example:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "HighErrorRate",
                "severity": "critical",
                "service": "api-gateway",
                "instance": "gw-1",
            },
            "annotations": {"summary": "5xx rate above 5% for 5 minutes"},
            "startsAt": "2026-11-23T05:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=rate",
            "fingerprint": "b1a2c3d4e5f60718",
        }
    ],
}

GENERIC_ALERTS: dict[str, Any] = {
    "alerts": [
        {
            "labels": {"alertname": "BackupFailed", "service": "billing-db", "severity": "warning"},
            "annotations": {"summary": "nightly backup exited with status 2"},
            "status": "firing",
            "starts_at": "2026-11-23T03:10:00Z",
        }
    ]
}

GENERIC_ALERTS_LIST: list[dict[str, Any]] = [
    {
        "labels": {"alertname": "BackupFailed", "service": "billing-db", "severity": "warning"},
        "status": "resolved",
        "starts_at": "2026-11-23T03:10:00Z",
        "ends_at": "2026-11-23T03:40:00Z",
    }
]

INGEST_ACCEPTED: dict[str, Any] = {
    "status": "accepted",
    "alerts": 1,
    "fingerprints": ["b1a2c3d4e5f60718"],
}

INGEST_DUPLICATE: dict[str, Any] = {
    "status": "duplicate",
    "alerts": 1,
    "fingerprints": ["b1a2c3d4e5f60718"],
}
