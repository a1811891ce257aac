"""Request bodies for the benchmark: Alertmanager webhooks, each body unlike any earlier one.

The service answers an identical delivery within its duplicate window with "duplicate" and
writes nothing, so new alerts carry a unique instance label and re-sent alerts (updates:
same fingerprint) carry a new annotation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.factories import am_alert, am_payload

START = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
ALERTNAMES = ("DiskFull", "HighLatency", "PodCrashLooping", "TargetDown", "HighErrorRate")
SEVERITIES = ("critical", "warning", "info", "error")


@dataclass(slots=True)
class Body:
    """One webhook body and the fingerprints of the alerts inside it."""

    data: bytes
    fingerprints: list[str]


def new_alerts(namespace: str, count: int, per_group: int) -> list[dict[str, Any]]:
    """`count` alerts with distinct label sets; each run of `per_group` shares an alertname."""
    alerts = []
    for i in range(count):
        labels = {
            "alertname": ALERTNAMES[(i // per_group) % len(ALERTNAMES)],
            "instance": f"{namespace}-{i}.example:9100",
            "job": "node",
            "severity": SEVERITIES[i % len(SEVERITIES)],
            "service": f"svc-{i % 200}",
            "mountpoint": "/var",
        }
        alerts.append(am_alert(labels, starts_at=START))
    return alerts


def resent(alerts: Sequence[dict[str, Any]], round_: int) -> list[dict[str, Any]]:
    """The same alerts again (same fingerprints and start) with an annotation that is new."""
    return [{**a, "annotations": {**a["annotations"], "round": str(round_)}} for a in alerts]


def bodies(alerts: Sequence[dict[str, Any]], per_body: int) -> list[Body]:
    """Alertmanager webhook bodies of `per_body` alerts each."""
    out = []
    for at in range(0, len(alerts), per_body):
        chunk = list(alerts[at : at + per_body])
        out.append(Body(orjson.dumps(am_payload(chunk)), [a["fingerprint"] for a in chunk]))
    return out
