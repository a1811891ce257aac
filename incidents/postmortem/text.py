"""Words both the Markdown and the HTML use: times, spans, data summaries, role names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from incidents.postmortem.sections import duration_text

__all__ = ["ROLE_LEGEND", "duration_text", "key_data", "other_labels", "when"]

# Keys whose values the timeline line already says, or that are too long to list.
_SKIP: Final = {"message", "labels", "paged", "explains", "possibly_related", "absorbed"}
MAX_KEYS: Final = 6
MAX_VALUE: Final = 80

ROLE_LEGEND: Final = (
    ("root_cause", "Root cause", "the most likely cause (thick solid border)"),
    ("candidate", "Candidate cause", "another possible cause (dashed border)"),
    ("affected", "Alerting", "a service that raised an alert (solid border)"),
    ("blast_radius", "Blast radius", "depends on the root cause, no alert (dotted border)"),
    ("context", "Context", "a dependency shown for orientation (thin grey border)"),
)


def when(value: datetime | None) -> str:
    """A time for people: `2026-12-06 10:40:05 UTC`; `-` when none."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# Labels every alert has, already shown in their own columns.
_SHOWN_LABELS: Final = {"alertname", "service", "severity"}


def other_labels(labels: dict[str, str]) -> str:
    """The labels not shown elsewhere, as `key=value` pairs."""
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _SHOWN_LABELS)


def key_data(data: dict[str, Any]) -> str:
    """A short `key=value` summary of an event's data (scalars only, bounded)."""
    parts = []
    for key in sorted(data):
        value = data[key]
        if key in _SKIP or isinstance(value, dict | list) or value is None or value == "":
            continue
        text = str(value)
        if len(text) > MAX_VALUE:
            text = text[: MAX_VALUE - 1] + "…"
        parts.append(f"{key}={text}")
        if len(parts) == MAX_KEYS:
            break
    return ", ".join(parts)
