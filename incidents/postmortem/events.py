"""The postmortem's timeline: the incident's entries, its alerts firing and resolving,
and its notifications, merged in time order; and what is grouped out of them
(notifications per channel, escalation steps, playbook runs).

Entry kinds this module does not know are kept as they are: a new kind shows up in the
timeline with its time, actor, message and data without any change here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from incidents.models import TimelineEntry
from incidents.postmortem.model import (
    AlertMember,
    ChannelReport,
    Delivery,
    EscalationStep,
    Event,
    PlaybookRun,
    PlaybookStep,
)
from incidents.vocab import TimelineKind

PLAYBOOK_RUN: Final = "playbook_run"
PLAYBOOK_STEP: Final = "playbook_step"

# Synthetic kinds: facts from the alert and notification tables, not timeline rows.
ALERT_FIRED: Final = "alert_fired"
ALERT_RESOLVED: Final = "alert_resolved"
NOTIFICATION: Final = "notification"

# At the same instant, the cause comes before what it caused.
_SOURCE_ORDER: Final = {"alert": 0, "timeline": 1, "notification": 2}


def merged_timeline(
    entries: Sequence[TimelineEntry],
    alerts: Sequence[AlertMember],
    notifications: Sequence[dict[str, Any]],
) -> tuple[Event, ...]:
    """Every event of the incident, oldest first; ties keep cause before effect."""
    events: list[tuple[datetime, int, int, Event]] = []
    for n, a in enumerate(alerts):
        fired = Event(
            at=a.starts_at,
            kind=ALERT_FIRED,
            actor="alertmanager",
            message=f"alert {a.alertname} fired on {a.service} ({a.severity})",
            source="alert",
            data={"fingerprint": a.fingerprint, "service": a.service, "severity": a.severity},
        )
        events.append((a.starts_at, 0, n, fired))
        if a.ends_at is not None:
            ended = Event(
                at=a.ends_at,
                kind=ALERT_RESOLVED,
                actor="alertmanager",
                message=f"alert {a.alertname} resolved on {a.service}",
                source="alert",
                data={"fingerprint": a.fingerprint, "service": a.service},
            )
            events.append((a.ends_at, 0, n, ended))
    for n, e in enumerate(entries):
        event = Event(
            at=e.at,
            kind=e.kind,
            actor=e.actor,
            message=e.message,
            source="timeline",
            data=dict(e.data or {}),
        )
        events.append((e.at, _SOURCE_ORDER["timeline"], n, event))
    for n, row in enumerate(notifications):
        at = row["sent_at"] or row["updated_at"] or row["created_at"]
        outcome = row["status"] + (f": {row['error']}" if row["error"] else "")
        event = Event(
            at=at,
            kind=NOTIFICATION,
            actor="system",
            message=f"{row['event']} via {row['channel']} to {row['target']}: {outcome}",
            source="notification",
            data={
                "channel": row["channel"],
                "target": row["target"],
                "event": row["event"],
                "status": row["status"],
                "attempts": row["attempts"],
            },
        )
        events.append((at, _SOURCE_ORDER["notification"], n, event))
    events.sort(key=lambda item: (item[0], item[1], item[2]))
    return tuple(event for *_, event in events)


def channel_reports(notifications: Sequence[dict[str, Any]]) -> tuple[ChannelReport, ...]:
    """Notifications grouped by channel (in name order) with a count per status."""
    by_channel: dict[str, list[Delivery]] = {}
    for row in notifications:
        by_channel.setdefault(row["channel"], []).append(
            Delivery(
                event=row["event"],
                receiver=row["receiver"],
                target=row["target"],
                status=row["status"],
                attempts=int(row["attempts"]),
                created_at=row["created_at"],
                sent_at=row["sent_at"],
                error=row["error"],
                provider_status=row["provider_status"],
            )
        )
    reports = []
    for channel in sorted(by_channel):
        counts: dict[str, int] = {}
        for delivery in by_channel[channel]:
            counts[delivery.status] = counts.get(delivery.status, 0) + 1
        reports.append(
            ChannelReport(channel=channel, counts=counts, deliveries=tuple(by_channel[channel]))
        )
    return tuple(reports)


def escalation_steps(entries: Sequence[TimelineEntry]) -> tuple[EscalationStep, ...]:
    """The escalation steps that ran, from their timeline entries."""
    steps = []
    for e in entries:
        if e.kind != TimelineKind.ESCALATED.value:
            continue
        data = e.data or {}
        paged = [_paged_name(p) for p in data.get("paged", [])]
        steps.append(
            EscalationStep(
                at=e.at,
                policy=str(data.get("policy", "")),
                level=int(data.get("level", 0)),
                round=int(data.get("round", 1)),
                paged=tuple(paged),
                done=bool(data.get("done", False)),
            )
        )
    return tuple(steps)


def _paged_name(paged: Any) -> str:
    if isinstance(paged, dict):
        who = f"{paged['who']}: " if paged.get("who") else ""
        return f"{who}{paged.get('channel', '?')} {paged.get('target', '?')}"
    return str(paged)


def playbook_runs(entries: Sequence[TimelineEntry]) -> tuple[PlaybookRun, ...]:
    """Playbook runs and their steps, grouped by run id, in the order they started."""
    runs: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e.kind not in (PLAYBOOK_RUN, PLAYBOOK_STEP):
            continue
        data = e.data or {}
        if data.get("run_id") is None:
            continue  # a run the policy refused: on the timeline, not a run
        run_id = str(data["run_id"])
        run = runs.setdefault(
            run_id,
            {"playbook": str(data.get("playbook", "")), "status": None, "at": e.at, "steps": []},
        )
        if data.get("playbook"):
            run["playbook"] = str(data["playbook"])
        if e.kind == PLAYBOOK_RUN:
            run["status"] = _text(data.get("status")) or run["status"]
        else:
            run["steps"].append(
                PlaybookStep(
                    at=e.at,
                    step=str(data.get("step", "")),
                    action=_text(data.get("action")),
                    status=_text(data.get("status")),
                    result=_text(data.get("result")),
                    error=_text(data.get("error")),
                )
            )
    return tuple(
        PlaybookRun(
            run_id=run_id,
            playbook=run["playbook"],
            status=run["status"],
            started_at=run["at"],
            steps=tuple(run["steps"]),
        )
        for run_id, run in runs.items()
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
