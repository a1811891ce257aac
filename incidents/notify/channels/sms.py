"""The SMS channel: one Twilio message per notification, at most two segments long.

The text names the incident and how to answer it by reply: `<code>a` acknowledges and
`<code>c` closes, where the code is the recipient's own short number for the incident
(incidents.acting.sms_store; the inbound SMS webhook reads these). A number that replied
STOP is sent nothing: the worker's claim skips its notifications as unreachable
(incidents.notify.unreachable), and one that opted out meanwhile fails here at once. A long title is
shortened with an ellipsis so the whole text stays within two segments; a phone shows a
longer message in pieces, and every segment is billed.

A playbook approval request has its own wording: what wants to run, and `<code>y` /
`<code>n` to approve or reject it (or `approve <approval code>`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jinja2 import Template

from incidents.notify import gsm
from incidents.notify.approval_note import APPROVAL_EVENT
from incidents.notify.approval_note import read as read_ask
from incidents.notify.base import Notification, SendResult, register
from incidents.notify.channels.twilio_client import (
    TwilioSettings,
    body_key,
    build_client,
    classify,
    find_created,
    missing_settings,
    settings_from,
    status_callback_url,
)
from incidents.notify.templates import compile_template, render_text, template_context

MAX_SEGMENTS = 2

DEFAULT_TEMPLATE = (
    "[{{ severity }}{% if event_label %} {{ event_label }}{% endif %}] #{{ incident_id }} "
    "{{ title }}{% if where %} on {{ where }}{% endif %}{% if others %} (+{{ others }}){% endif %}"
    ". Reply '{{ ack_code }}' to ack, '{{ close_code }}' to close"
)
DEFAULT_RESOLVED_TEMPLATE = (
    "RESOLVED #{{ incident_id }} {{ title }}{% if where %} on {{ where }}{% endif %}"
    "{% if others %} (+{{ others }}){% endif %}"
)
# A word after the severity for events other than the first page.
EVENT_LABELS = {
    "opened": "",
    "severity_raised": "RAISED",
    "reopened": "REOPENED",
    "updated": "UPDATE",
    "reminder": "REMINDER",
}
# The SMS templates' own variables, as a sample for checking a template at build().
SMS_VARIABLES = {"event_label": "", "ack_code": "1a", "close_code": "1c"}


# Twilio's error for a number that replied STOP.
OPTED_OUT_CODE = 21610


def approval_text(n: Notification) -> str:
    """The text asking the on-call to approve a playbook step, with how to answer."""
    ask = read_ask(n.details)
    if ask is None:
        return gsm.fit(f"{n.severity} #{n.incident_id}: " + " ".join(n.details), MAX_SEGMENTS)
    answers = []
    if n.reply_code is not None:
        answers.append(f"Reply {n.reply_code}y to approve, {n.reply_code}n to reject")
    if ask.code is not None:
        by_code = f"approve {ask.code}"
        answers.append(f"(or {by_code})" if answers else f"Reply {by_code} or reject {ask.code}")
    how = " ".join(answers)
    text = (
        f"{n.severity} #{n.incident_id} playbook {ask.playbook} wants to run {ask.step} "
        f"({ask.action}). {how}"
    )
    if gsm.segments(text) > MAX_SEGMENTS:
        # Long names: the answer matters more than the action's name.
        text = f"#{n.incident_id} approve step {ask.step}? {how}"
    return gsm.fit(text.strip(), MAX_SEGMENTS)


def ack_code(reply_code: int | None, incident_id: int) -> str:
    """The reply that acknowledges an incident: the recipient's code, else by id."""
    return f"{reply_code}a" if reply_code is not None else f"ack {incident_id}"


def close_code(reply_code: int | None, incident_id: int) -> str:
    """The reply that closes an incident: the recipient's code, else by id."""
    return f"{reply_code}c" if reply_code is not None else f"resolve {incident_id}"


class SmsNotifier:
    """Sends notifications as Twilio SMS."""

    name = "sms"

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings
        # Compiled here so a broken override fails when the channel is built, not mid-page.
        self._defaults = (
            compile_template(DEFAULT_TEMPLATE, "sms", SMS_VARIABLES),
            compile_template(DEFAULT_RESOLVED_TEMPLATE, "sms resolved", SMS_VARIABLES),
        )
        self._templates: tuple[Template, Template] = (
            compile_template(settings.sms_template, "sms", SMS_VARIABLES)
            if settings.sms_template
            else self._defaults[0],
            compile_template(settings.sms_resolved_template, "sms resolved", SMS_VARIABLES)
            if settings.sms_resolved_template
            else self._defaults[1],
        )
        self._client, self._http = build_client(settings)

    def render(self, n: Notification) -> str:
        """The message text, with the title shortened to fit `MAX_SEGMENTS`."""
        if n.event == "summary":
            # A flood summary names several incidents: no single reply code applies.
            return gsm.fit(" ".join(n.details), MAX_SEGMENTS)
        if n.event == APPROVAL_EVENT:
            return approval_text(n)
        which = 1 if n.event == "resolved" else 0
        template, fallback = self._templates[which], self._defaults[which]
        context = template_context(n)
        context.update(
            event_label=EVENT_LABELS.get(n.event, n.event.upper()),
            ack_code=ack_code(n.reply_code, n.incident_id),
            close_code=close_code(n.reply_code, n.incident_id),
        )

        def with_title(title: str) -> str:
            return render_text(template, fallback, {**context, "title": title}, "sms").strip()

        text = with_title(n.title)
        if gsm.segments(text) <= MAX_SEGMENTS:
            return text
        mark = gsm.ellipsis_for(text)
        # The encoding is fixed by the full text and the mark keeps it, so shortening the
        # title never adds segments: a binary search finds the longest title that fits.
        low, high = 0, len(n.title)
        while low < high:
            middle = (low + high + 1) // 2
            if gsm.segments(with_title(n.title[:middle] + mark)) <= MAX_SEGMENTS:
                low = middle
            else:
                high = middle - 1
        shortened = with_title(n.title[:low] + mark)
        # Service names alone may be too long; then the tail goes.
        return gsm.fit(shortened, MAX_SEGMENTS)

    def attempt_key(self, notification: Notification) -> str | None:
        """A digest of the text, to know the attempt's message among others."""
        return body_key(self.render(notification))

    def find(
        self, notification: Notification, since: datetime, key: str | None
    ) -> SendResult | None:
        """The message an earlier attempt made, if Twilio has it: to this number, from
        ours, created while that attempt's request was open, with the same text."""
        until = since + timedelta(seconds=self.settings.timeout_seconds)
        listing = self._client.messages.list(
            to=notification.target, from_=self.settings.from_number, limit=50
        )
        sid = find_created(
            listing, since, until, lambda m: key is None or body_key(m.body or "") == key
        )
        return SendResult(ok=True, provider_id=sid) if sid else None

    def send(self, notification: Notification) -> SendResult:
        """Send one SMS to the notification's target number."""
        missing = missing_settings(self.settings)
        if missing:
            return SendResult(
                ok=False, error=f"sms channel is not configured: missing {', '.join(missing)}"
            )
        if notification.opted_out:
            return SendResult(
                ok=False,
                target_unreachable=True,
                error=f"{OPTED_OUT_CODE}: {notification.target} replied STOP to our number; "
                "nothing is texted to it until it replies START",
            )
        body = self.render(notification)
        callback = status_callback_url(self.settings, notification.delivery_id)
        extra = {"status_callback": callback} if callback else {}
        try:
            message = self._client.messages.create(
                to=notification.target, from_=self.settings.from_number, body=body, **extra
            )
        except Exception as exc:  # classify() answers every failure; send() never raises
            return classify(exc, self._http)
        # Twilio answers a refused message with an error status; a created one is queued,
        # and its later delivery outcome arrives by status callback (delivery_status.py).
        return SendResult(ok=True, provider_id=str(message.sid) if message.sid else None)


@register("sms")
def build_sms(settings: Any) -> SmsNotifier:
    """The SMS channel from Twilio settings (a `TwilioSettings` or a mapping)."""
    return SmsNotifier(settings_from(settings))
