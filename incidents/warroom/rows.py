"""The war room's outbox rows, written by the routing stage in the pipeline's transaction.

A P0 opening gets one `warroom` row (due when the opening hold ends, so a merge within
the hold cancels it like any page); resolving an incident that has a war room gets an
`archive` row due `warroom.archive_after` later; reopening cancels that row while it
waits. No network call here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from incidents.notify.models import NOTIFICATIONS
from incidents.notify.outbox import cancel_scheduled
from incidents.pipeline.stages import IncidentEvent, RunContext
from incidents.vocab import TimelineKind

CHANNEL = "warroom"
# One war room per incident: every row of the channel has this target.
TARGET = "p0"
RECEIVER = "warroom"
ARCHIVE_KEY = "warroom-archive:"
SEVERITY = "P0"


@dataclass(frozen=True, slots=True)
class WarRoomPlan:
    """What the routing stage needs from the settings."""

    enabled: bool
    archive_after: timedelta

    @classmethod
    def from_settings(cls, settings: Any) -> WarRoomPlan:
        """On only with `warroom.enabled` and a Slack bot token."""
        section = settings.warroom
        return cls(
            enabled=bool(section.enabled and settings.slack_bot_token),
            archive_after=section.archive_delay(),
        )


def rows_for(
    ctx: RunContext, events: Sequence[IncidentEvent], plan: WarRoomPlan
) -> list[dict[str, Any]]:
    """The war-room rows these events call for (and cancel an archive on reopening)."""
    if not plan.enabled:
        return []
    rows: list[dict[str, Any]] = []
    for event in events:
        if event.entry_id is None:
            continue
        if event.kind == TimelineKind.REOPENED:
            cancel_scheduled(
                ctx.session, event.incident_id, ARCHIVE_KEY, "the incident reopened", ctx.now
            )
        elif event.kind == TimelineKind.OPENED and event.pages and event.severity == SEVERITY:
            due = ctx.now
            if event.data.get("hold_until"):
                due = max(ctx.now, datetime.fromisoformat(event.data["hold_until"]))
            rows.append(_row(ctx, event, f"entry:{event.entry_id}", "opened", due))
        elif event.kind == TimelineKind.RESOLVED and has_war_room(ctx, event.incident_id):
            key = f"{ARCHIVE_KEY}{event.entry_id}"
            rows.append(_row(ctx, event, key, "archive", ctx.now + plan.archive_after))
    return rows


def has_war_room(ctx: RunContext, incident_id: int) -> bool:
    """Whether the incident got a war-room row (sent, or still on its way)."""
    n = NOTIFICATIONS.c
    found = ctx.session.scalar(
        select(n.id)
        .where(n.incident_id == incident_id, n.channel == CHANNEL, n.event == "opened")
        .where(n.status.in_(("pending", "sending", "sent")))
        .limit(1)
    )
    return found is not None


def _row(
    ctx: RunContext, event: IncidentEvent, key: str, kind: str, due: datetime
) -> dict[str, Any]:
    return {
        "incident_id": event.incident_id,
        "event_key": key,
        "event": kind,
        "receiver": RECEIVER,
        "channel": CHANNEL,
        "target": TARGET,
        "status": "pending",
        "attempts": 0,
        "not_before": due,
        "created_at": ctx.now,
        "updated_at": ctx.now,
        "details": [],
    }
