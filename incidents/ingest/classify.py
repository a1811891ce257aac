"""Severity and service, derived from an alert's labels by configurable tables."""

from __future__ import annotations

from collections.abc import Mapping

from incidents.config import SEVERITIES, IngestSettings


def classify(labels: Mapping[str, str], settings: IngestSettings) -> tuple[str, str | None]:
    """Return (severity P0..P3, service name or None) for a label set."""
    severity: str = settings.default_severity
    for key in settings.severity_labels:
        raw = labels.get(key)
        if raw is None:
            continue
        value = raw.strip()
        if value.upper() in SEVERITIES:
            severity = value.upper()
        else:
            severity = settings.severity_map.get(value.lower(), settings.default_severity)
        break
    service = None
    for key in settings.service_labels:
        candidate = labels.get(key)
        if candidate:
            service = candidate
            break
    return severity, service
