"""The voice channel: a Twilio call that reads the incident out and takes one key press.

The call's TwiML is sent inline (`twiml=`), so Twilio needs no URL of ours to start it.
The menu (`<Gather numDigits="1">`) posts the pressed key to
`<public_url>/api/v1/integrations/twilio/voice?incident=<id>`: 1 acknowledges, 2 resolves,
3 escalates now (incidents.api.integrations_twilio). Without a
`public_url` nothing could receive the key, so the call only reads the message, twice.
With one, Twilio also reports how the call ended (answered, busy, no answer) to the
status callback (incidents.notify.delivery_status).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jinja2 import Template
from twilio.twiml.voice_response import VoiceResponse

from incidents.acting import TWILIO_VOICE_PATH
from incidents.notify.base import Notification, SendResult, register
from incidents.notify.channels.twilio_client import (
    TwilioSettings,
    build_client,
    classify,
    find_created,
    missing_settings,
    settings_from,
    status_callback_url,
)
from incidents.notify.templates import compile_template, render_text, template_context

DEFAULT_TEMPLATE = (
    "{% if event == 'resolved' %}Resolved: incident {{ incident_id }}"
    "{% else %}Severity {{ severity }} incident {{ incident_id }}"
    "{% if event_spoken %}, {{ event_spoken }}{% endif %}{% endif %}: "
    "{{ title }}{% if where %}, on {{ where }}{% endif %}"
    "{% if others %}, and {{ others }} more services{% endif %}."
)
PROMPT = "Press 1 to acknowledge, 2 to resolve, 3 to escalate now."
GOODBYE = "No key was pressed. Goodbye."
EVENT_SPOKEN = {
    "opened": "",
    "severity_raised": "severity raised",
    "reopened": "reopened",
    "updated": "updated",
    "reminder": "still not acknowledged",
}
VOICE_VARIABLES = {"event_spoken": ""}
# The call progress events Twilio reports to the status callback.
CALLBACK_EVENTS = ("answered", "completed")
# Twilio refuses inline TwiML over 4,000 characters; a title is read out twice.
MAX_TITLE = 300


def action_url(public_url: str, incident_id: int) -> str:
    """Where Twilio posts the pressed key for an incident."""
    return f"{public_url.rstrip('/')}{TWILIO_VOICE_PATH}?incident={incident_id}"


class VoiceNotifier:
    """Places Twilio calls that read the incident and offer acknowledge / resolve / escalate."""

    name = "voice"

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings
        self._default = compile_template(DEFAULT_TEMPLATE, "voice", VOICE_VARIABLES)
        self._template: Template = (
            compile_template(settings.voice_template, "voice", VOICE_VARIABLES)
            if settings.voice_template
            else self._default
        )
        self._client, self._http = build_client(settings)

    def spoken(self, n: Notification) -> str:
        """The sentence read out for this notification."""
        title = n.title if len(n.title) <= MAX_TITLE else n.title[: MAX_TITLE - 1] + "…"
        context = template_context(n)
        context.update(title=title, event_spoken=EVENT_SPOKEN.get(n.event, n.event))
        return " ".join(render_text(self._template, self._default, context, "voice").split())

    def twiml(self, n: Notification) -> str:
        """The call's TwiML document."""
        text = self.spoken(n)
        response = VoiceResponse()
        if self.settings.public_url and n.event != "resolved":
            gather = response.gather(
                num_digits=1,
                action=action_url(self.settings.public_url, n.incident_id),
                method="POST",
                timeout=5,
            )
            # Said twice: the first words are often lost while the phone comes to an ear.
            gather.say(f"{text} {PROMPT}")
            gather.pause(length=1)
            gather.say(f"{text} {PROMPT}")
            response.say(GOODBYE)
        else:
            response.say(text)
            response.pause(length=1)
            response.say(text)
        return str(response.to_xml())

    def attempt_key(self, notification: Notification) -> str | None:
        """Nothing: a call is known by number and time (Twilio does not keep its TwiML)."""
        return None

    def find(
        self, notification: Notification, since: datetime, key: str | None
    ) -> SendResult | None:
        """The call an earlier attempt made, if Twilio has it: to this number, from ours,
        created while that attempt's request was open."""
        until = since + timedelta(seconds=self.settings.timeout_seconds)
        listing = self._client.calls.list(
            to=notification.target, from_=self.settings.from_number, limit=20
        )
        sid = find_created(listing, since, until)
        return SendResult(ok=True, provider_id=sid) if sid else None

    def send(self, notification: Notification) -> SendResult:
        """Place one call to the notification's target number."""
        missing = missing_settings(self.settings)
        if missing:
            return SendResult(
                ok=False, error=f"voice channel is not configured: missing {', '.join(missing)}"
            )
        callback = status_callback_url(self.settings, notification.delivery_id)
        extra: dict[str, Any] = {}
        if callback:
            # `answered` says someone picked up; `completed` is the end, whatever it was
            # (completed, busy, no-answer, failed, canceled).
            extra = {
                "status_callback": callback,
                "status_callback_event": list(CALLBACK_EVENTS),
                "status_callback_method": "POST",
            }
        try:
            call = self._client.calls.create(
                to=notification.target,
                from_=self.settings.from_number,
                twiml=self.twiml(notification),
                **extra,
            )
        except Exception as exc:  # classify() answers every failure; send() never raises
            return classify(exc, self._http)
        return SendResult(ok=True, provider_id=str(call.sid) if call.sid else None)


@register("voice")
def build_voice(settings: Any) -> VoiceNotifier:
    """The voice channel from Twilio settings (a `TwilioSettings` or a mapping)."""
    return VoiceNotifier(settings_from(settings))
