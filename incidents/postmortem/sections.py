"""The sections people write (impact, root cause, what went well and badly, action
items), prefilled with what the data can say; the rest is theirs to write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from incidents.postmortem.model import (
    AlertMember,
    Cause,
    ChannelReport,
    EscalationStep,
    IncidentFacts,
    PlaybookRun,
    Section,
    Times,
)

# Past this, an acknowledgement is called slow in "what went badly".
SLOW_ACK_SECONDS: Final = 15 * 60
FAILED: Final = {"failed"}


def duration_text(seconds: float | None) -> str:
    """A span for people: `1 h 5 min`, `4 min 10 s`, `12 s`; `-` when unknown."""
    if seconds is None:
        return "-"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def prefill_sections(
    facts: IncidentFacts,
    times: Times,
    causes: Sequence[Cause],
    alerts: Sequence[AlertMember],
    channels: Sequence[ChannelReport],
    steps: Sequence[EscalationStep],
    runs: Sequence[PlaybookRun],
) -> tuple[Section, ...]:
    """The five sections, in order, with what the data allows."""
    return (
        Section("impact", "Impact", _impact(facts, times), needs_author=True),
        Section("root_cause", "Root cause", _cause(causes), needs_author=True),
        Section("went_well", "What went well", _well(times, alerts, channels, runs), True),
        Section("went_badly", "What went badly", _badly(times, channels, steps, runs), True),
        Section("action_items", "Action items", _actions(causes, channels), needs_author=True),
    )


def _impact(facts: IncidentFacts, times: Times) -> tuple[str, ...]:
    lines = [
        f"{facts.severity} incident affecting {len(facts.services)} service(s): "
        f"{', '.join(facts.services) or 'none recorded'}.",
    ]
    if times.ongoing:
        lines.append(f"Ongoing for {duration_text(times.duration_seconds)} so far.")
    else:
        lines.append(f"Lasted {duration_text(times.duration_seconds)}.")
    return tuple(lines)


def _cause(causes: Sequence[Cause]) -> tuple[str, ...]:
    if not causes:
        return ()
    top = causes[0]
    kind = "inferred (it raised no alert)" if top.inferred else "alerting"
    return (f"Most likely cause, {kind}: {top.service}. {top.reason}. To be confirmed.",)


def _well(
    times: Times,
    alerts: Sequence[AlertMember],
    channels: Sequence[ChannelReport],
    runs: Sequence[PlaybookRun],
) -> tuple[str, ...]:
    lines = []
    if len(alerts) > 1:
        lines.append(f"{len(alerts)} alerts were grouped into this one incident.")
    tta = times.time_to_acknowledge_seconds
    if tta is not None and tta <= SLOW_ACK_SECONDS:
        lines.append(f"Acknowledged {duration_text(tta)} after detection.")
    sent = sum(c.counts.get("sent", 0) for c in channels)
    failed = sum(c.counts.get("failed", 0) + c.counts.get("unreachable", 0) for c in channels)
    if sent and not failed:
        lines.append(f"All {sent} notification(s) sent were delivered to their provider.")
    ok_runs = [r for r in runs if r.status in ("succeeded", "success", "done")]
    if ok_runs:
        lines.append(f"{len(ok_runs)} playbook run(s) succeeded.")
    return tuple(lines)


def _badly(
    times: Times,
    channels: Sequence[ChannelReport],
    steps: Sequence[EscalationStep],
    runs: Sequence[PlaybookRun],
) -> tuple[str, ...]:
    lines = []
    tta = times.time_to_acknowledge_seconds
    if tta is not None and tta > SLOW_ACK_SECONDS:
        lines.append(f"Acknowledged only {duration_text(tta)} after detection.")
    if tta is None and not times.ongoing:
        lines.append("Nobody acknowledged it before it resolved.")
    for channel in channels:
        failed = channel.counts.get("failed", 0)
        if failed:
            lines.append(f"{failed} {channel.channel} notification(s) failed.")
        skipped = channel.counts.get("unreachable", 0)
        if skipped:
            lines.append(
                f"{skipped} {channel.channel} notification(s) were skipped: their target is "
                "marked unreachable or opted out."
            )
    climbed = max((s.level for s in steps), default=0)
    if climbed > 1:
        lines.append(f"Escalation climbed to level {climbed} before anyone acknowledged.")
    failed_runs = [r for r in runs if r.status in ("failed", "error")]
    if failed_runs:
        lines.append(f"{len(failed_runs)} playbook run(s) failed.")
    return tuple(lines)


def _actions(causes: Sequence[Cause], channels: Sequence[ChannelReport]) -> tuple[str, ...]:
    lines = []
    silent = [c.service for c in causes if c.inferred]
    for service in silent[:1]:
        lines.append(f"Consider an alert on {service}: it raised none, yet it is the likely cause.")
    for channel in channels:
        if channel.counts.get("failed", 0):
            lines.append(f"Check the {channel.channel} channel's configuration and targets.")
    return tuple(lines)
