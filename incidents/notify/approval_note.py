"""The notification that asks the on-call to approve a playbook step.

A run that waits for approval (incidents.playbooks.approval) writes a PLAYBOOK_RUN entry
whose data holds the request. The routing stage turns it into `approval` rows for the
Slack, email and SMS targets of the incident's receivers: it is action-required, so the
on-call's phone gets it too. The row carries the request as its detail lines, readable
as they stand in an email, and `read` turns them back into an `Ask` for the channels
that draw buttons (Slack) or reply codes (SMS). No network call here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from incidents.db import aggregate_time
from incidents.notify.models import NOTIFICATIONS
from incidents.pipeline.stages import IncidentEvent, RunContext
from incidents.vocab import TimelineKind

APPROVAL_EVENT = "approval"
CHANNELS = ("slack", "email", "sms")

# The lines `details` writes; playbook ids, step and action names have no spaces.
_WANTS = re.compile(r"playbook (\S+) wants to run step (\S+) \((\S+)\) in run (\d+)")
_CODE = re.compile(r"SMS 'approve (\d+)'")
_EXPIRES = re.compile(r"expires at (.+)$")


@dataclass(frozen=True, slots=True)
class Ask:
    """One approval request, as a channel needs it."""

    run_id: int
    playbook: str
    step: str
    action: str
    code: int | None
    # As shown to people ("2026-12-06 11:30 UTC"), or "" when unknown.
    expires: str


def is_request(event: IncidentEvent) -> bool:
    """Whether the event asks someone to approve a playbook step."""
    return event.kind == TimelineKind.PLAYBOOK_RUN and isinstance(event.data.get("approval"), dict)


def details(ask: Mapping[str, Any]) -> list[str]:
    """The detail lines of an approval row: what waits, how to answer, until when."""
    run, code = ask["run_id"], ask["code"]
    lines = [
        f"playbook {ask['playbook']} wants to run step {ask['step']} ({ask['action']}) "
        f"in run {run}",
        f"approve or reject it with the Slack buttons, by SMS 'approve {code}' or "
        f"'reject {code}', or POST /api/v1/playbook-runs/{run}/approve (or /reject)",
    ]
    if ask.get("expires_at"):
        when = datetime.fromisoformat(str(ask["expires_at"]))
        lines.append(f"unanswered, it expires at {when:%Y-%m-%d %H:%M} UTC")
    return lines


def read(lines: Sequence[str]) -> Ask | None:
    """The request an approval row's details describe; None if they describe none."""
    wants = next((m for m in map(_WANTS.match, lines) if m), None)
    if wants is None:
        return None
    code = next((m for m in map(_CODE.search, lines) if m), None)
    expires = next((m for m in map(_EXPIRES.search, lines) if m), None)
    return Ask(
        run_id=int(wants[4]),
        playbook=wants[1],
        step=wants[2],
        action=wants[3],
        code=int(code[1]) if code else None,
        expires=expires[1] if expires else "",
    )


def rows(
    ctx: RunContext, event: IncidentEvent, receiver: str, targets: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """The outbox rows of one approval request for one receiver's targets.

    A row never goes ahead of the incident's first message to the same target (still
    held by the opening hold): the Slack request is then a reply in its thread, and the
    phone's reply code is the one its page teaches.
    """
    lines = details(event.data["approval"])
    first = _first_messages(ctx, event.incident_id)
    out = []
    for channel in CHANNELS:
        for target in targets.get(channel, ()):
            out.append(
                {
                    "incident_id": event.incident_id,
                    "event_key": f"entry:{event.entry_id}",
                    "event": APPROVAL_EVENT,
                    "receiver": receiver,
                    "channel": channel,
                    "target": target,
                    "status": "pending",
                    "attempts": 0,
                    "not_before": max(ctx.now, first.get((channel, target), ctx.now)),
                    "created_at": ctx.now,
                    "updated_at": ctx.now,
                    "details": lines,
                }
            )
    return out


def _first_messages(ctx: RunContext, incident_id: int) -> dict[tuple[str, str], datetime]:
    """When the incident's opening rows still waiting to be sent are due, per target."""
    n = NOTIFICATIONS.c
    found = ctx.session.execute(
        select(n.channel, n.target, func.max(n.not_before))
        .where(n.incident_id == incident_id, n.event == "opened", n.status == "pending")
        .group_by(n.channel, n.target)
    ).tuples()
    return {(channel, target): aggregate_time(at) for channel, target, at in found}
