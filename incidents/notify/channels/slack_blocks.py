"""Block Kit rendering for the Slack channel: the incident message and its thread replies.

Kept apart from `slack.py` so the message layout can change without touching how the
channel talks to Slack. Everything here is pure: a `Notification` in, dicts and strings out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from incidents.notify.approval_note import Ask
from incidents.notify.base import Notification

# Slack's own limits: a header's text, a section's text, a button's label and value.
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FALLBACK_LIMIT = 3000
# Past this many names a list is cut short with "and N more" so the message stays legible.
LIST_LIMIT = 10

# The interactivity endpoint reads these: `value` is the incident id.
ACK_ACTION = "acknowledge"
RESOLVE_ACTION = "resolve"
OPEN_ACTION = "incident_open"
ACTIONS_BLOCK = "incident_actions"
# The approval buttons of a playbook run: `value` is the run id.
APPROVE_ACTION = "playbook_approve"
REJECT_ACTION = "playbook_reject"
APPROVAL_BLOCK = "playbook_approval"

SEVERITY_COLOURS = {
    "P0": "#D92D20",  # red
    "P1": "#F79009",  # orange
    "P2": "#FDD835",  # yellow
    "P3": "#98A2B3",  # grey
}
SEVERITY_EMOJI = {
    "P0": ":red_circle:",
    "P1": ":large_orange_circle:",
    "P2": ":large_yellow_circle:",
    "P3": ":white_circle:",
}
RESOLVED_COLOUR = "#12B76A"
# Statuses in which nobody needs to act any more, so the buttons go away.
CLOSED_STATUSES = frozenset({"resolved", "merged"})

EVENT_SUMMARIES = {
    "opened": "Incident opened.",
    "updated": "Incident updated.",
    "severity_raised": "Severity raised to {severity}.",
    "resolved": "Incident resolved.",
    "reopened": "Incident reopened.",
    "acknowledged": "Incident acknowledged.",
    "status_changed": "Status changed.",
    "severity_changed": "Severity changed to {severity}.",
    "assigned": "Incident assigned.",
    "note": "Note added.",
    "approval": "A playbook waits for approval.",
    "reminder": "Reminder: still open and not acknowledged.",
}
# States in which someone already has the incident: no Acknowledge button.
HANDLED_STATUSES = frozenset({"acknowledged", "investigating", "identified", "monitoring"})


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """Cut text to at most `limit` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(names: Sequence[str], limit: int = LIST_LIMIT) -> str:
    """Names joined by commas; past `limit` the rest is counted, not listed."""
    shown = ", ".join(names[:limit])
    rest = len(names) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def colour(n: Notification) -> str:
    """The attachment bar's colour: green once resolved, else by severity."""
    if n.status in CLOSED_STATUSES:
        return RESOLVED_COLOUR
    return SEVERITY_COLOURS.get(n.severity, SEVERITY_COLOURS["P3"])


def event_summary(n: Notification) -> str:
    """One line saying what happened, for a thread reply without details."""
    line = EVENT_SUMMARIES.get(n.event, f"Incident event: {n.event}.")
    return line.format(severity=n.severity)


def fallback_text(n: Notification, title: str) -> str:
    """The plain text Slack shows in notifications and where blocks cannot be drawn."""
    parts = [f"[{n.severity}] {title} ({n.status})"]
    if n.root_cause:
        parts.append(f"likely root cause: {n.root_cause}")
    if n.url:
        parts.append(n.url)
    return truncate(escape(" - ".join(parts)), FALLBACK_LIMIT)


def message_blocks(n: Notification, title: str) -> list[dict[str, Any]]:
    """The incident message's blocks: header, facts, root cause, services, buttons."""
    prefix = (
        ":white_check_mark:"
        if n.status in CLOSED_STATUSES
        else SEVERITY_EMOJI.get(n.severity, ":white_circle:")
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": _plain(truncate(f"{prefix} {n.severity} · {title}", HEADER_LIMIT)),
        },
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*Severity*\n{escape(n.severity)}"),
                _mrkdwn(f"*Status*\n{escape(n.status)}"),
                _mrkdwn(f"*Incident*\n#{n.incident_id}"),
            ],
        },
        {"type": "section", "block_id": "root_cause", "text": _mrkdwn(_root_cause(n))},
    ]
    if n.services:
        text = f"*Affected services:* {escape(shorten(n.services))}"
        blocks.append({"type": "section", "block_id": "services", "text": _mrkdwn(text)})
    if n.blast_radius:
        text = f"*Blast radius:* {escape(shorten(n.blast_radius))}"
        blocks.append({"type": "section", "block_id": "blast_radius", "text": _mrkdwn(text)})
    buttons = _buttons(n)
    if buttons:
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK, "elements": buttons})
    return blocks


def attachments(n: Notification) -> list[dict[str, Any]]:
    """A coloured bar under the message, so severity reads at a glance in the channel."""
    line = f"{n.severity} · {n.status} · last event: {n.event}"
    return [
        {
            "color": colour(n),
            "fallback": escape(line),
            "blocks": [{"type": "context", "elements": [_mrkdwn(escape(line))]}],
        }
    ]


def reply_text(n: Notification) -> str:
    """The default thread reply: the event in one line, then the details as bullets."""
    lines = [event_summary(n), *(f"• {d}" for d in n.details)]
    return truncate(escape("\n".join(lines)), SECTION_LIMIT)


def approval_text(n: Notification, ask: Ask) -> str:
    """The plain text of an approval request (notifications, and where blocks fail)."""
    line = (
        f"Approval needed: playbook {ask.playbook} wants to run step {ask.step} "
        f"({ask.action}) on incident #{n.incident_id} ({n.severity})"
    )
    return truncate(escape(line), FALLBACK_LIMIT)


def approval_blocks(n: Notification, ask: Ask) -> list[dict[str, Any]]:
    """The approval request: what waits, how else to answer, and Approve / Reject."""
    what = (
        f":raised_hand: *Approval needed:* playbook `{escape(ask.playbook)}` wants to run "
        f"step `{escape(ask.step)}` (`{escape(ask.action)}`) on incident #{n.incident_id}."
    )
    notes = [f"run {ask.run_id}"]
    if ask.expires:
        notes.append(f"expires at {escape(ask.expires)}")
    if ask.code is not None:
        notes.append(f"or by SMS: `approve {ask.code}` / `reject {ask.code}`")
    value = str(ask.run_id)
    return [
        {"type": "section", "text": _mrkdwn(truncate(what, SECTION_LIMIT))},
        {"type": "context", "elements": [_mrkdwn(" · ".join(notes))]},
        {
            "type": "actions",
            "block_id": APPROVAL_BLOCK,
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "text": _plain("Approve"),
                    "style": "primary",
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": REJECT_ACTION,
                    "text": _plain("Reject"),
                    "style": "danger",
                    "value": value,
                    # A rejected run stops for good: ask once.
                    "confirm": {
                        "title": _plain("Reject the playbook step?"),
                        "text": _plain(
                            truncate(f"{ask.playbook}: step {ask.step} will not run.", 300)
                        ),
                        "confirm": _plain("Reject"),
                        "deny": _plain("Cancel"),
                    },
                },
            ],
        },
    ]


def decided_blocks(text: str) -> list[dict[str, Any]]:
    """What an answered request shows instead of its buttons."""
    return [{"type": "section", "text": _mrkdwn(truncate(escape(text), SECTION_LIMIT))}]


def _root_cause(n: Notification) -> str:
    if not n.root_cause:
        return "*Likely root cause:* not determined yet"
    text = f"*Likely root cause:* `{escape(n.root_cause)}`"
    if n.root_reason:
        text += f"\n{escape(n.root_reason)}"
    return truncate(text, SECTION_LIMIT)


def _buttons(n: Notification) -> list[dict[str, Any]]:
    buttons: list[dict[str, Any]] = []
    if n.url:
        buttons.append(
            {
                "type": "button",
                "action_id": OPEN_ACTION,
                "text": _plain("Open incident"),
                "url": n.url,
            }
        )
    if n.status in CLOSED_STATUSES:
        return buttons
    value = str(n.incident_id)
    if n.status not in HANDLED_STATUSES:
        buttons.append(
            {
                "type": "button",
                "action_id": ACK_ACTION,
                "text": _plain("Acknowledge"),
                "style": "primary",
                "value": value,
            }
        )
    buttons.append(
        {
            "type": "button",
            "action_id": RESOLVE_ACTION,
            "text": _plain("Resolve"),
            "style": "danger",
            "value": value,
            # Resolving by mistake silences pages, so it asks once.
            "confirm": {
                "title": _plain("Resolve the incident?"),
                "text": _plain(truncate(f"#{n.incident_id}: {n.title}", 300)),
                "confirm": _plain("Resolve"),
                "deny": _plain("Cancel"),
            },
        }
    )
    return buttons


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}
