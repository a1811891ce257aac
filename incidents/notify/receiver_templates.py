"""A receiver's own message templates (`templates:` on a `routing.receivers` entry).

Each channel has a few parts an operator may reword; anything not given keeps the
built-in text. Every part is compiled in the sandbox and tried on the shared sample
notification when the config is read (start-up and `incidents check-config`), so a
syntax error or an unknown variable is reported with the file and line of its key.

    receivers:
      - name: critical
        slack: ["#incidents-critical"]
        templates:
          slack: {title: "{{ severity }} {{ title }} (owner: platform)"}
          email: {subject: "[{{ severity }}] #{{ incident_id }} {{ title }}"}
          sms: {text: "{{ severity }} #{{ incident_id }} {{ title }}. Reply {{ ack_code }}"}

The notify worker builds, for each receiver with templates, its own instance of the
channel with those overrides (`incidents.notify.setup`), and sends the receiver's rows
through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

# Part name in the config -> the channel settings' field it sets.
CHANNEL_FIELDS: dict[str, dict[str, str]] = {
    "slack": {"title": "title_template", "reply": "reply_template"},
    "email": {"subject": "subject_template", "text": "text_template", "html": "html_template"},
    "sms": {"text": "sms_template", "resolved": "sms_resolved_template"},
    "voice": {"say": "voice_template"},
    "console": {"text": "template"},
}


class _Parts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _compile(self) -> _Parts:
        from incidents.notify.routing_config import _fail

        problems: list[tuple[tuple[str | int, ...], str]] = []
        check = _checker(self._channel_name())
        for part in CHANNEL_FIELDS[self._channel_name()]:
            source = getattr(self, part)
            if source is None:
                continue
            try:
                check(source, part)
            except ValueError as exc:
                problems.append(((part,), str(exc)))
        _fail(problems)
        return self

    @classmethod
    def _channel_name(cls) -> str:
        raise NotImplementedError

    def overrides(self) -> dict[str, str]:
        """The channel settings these parts set (field name -> template source)."""
        fields = CHANNEL_FIELDS[self._channel_name()]
        return {
            fields[part]: getattr(self, part) for part in fields if getattr(self, part) is not None
        }


class SlackParts(_Parts):
    """The message's title line, and the text of thread replies."""

    title: str | None = None
    reply: str | None = None

    @classmethod
    def _channel_name(cls) -> str:
        return "slack"


class EmailParts(_Parts):
    """Subject, plain-text body and HTML body (the HTML one autoescapes)."""

    subject: str | None = None
    text: str | None = None
    html: str | None = None

    @classmethod
    def _channel_name(cls) -> str:
        return "email"


class SmsParts(_Parts):
    """The page's text, and the text sent when the incident is resolved."""

    text: str | None = None
    resolved: str | None = None

    @classmethod
    def _channel_name(cls) -> str:
        return "sms"


class VoiceParts(_Parts):
    """The sentence read out before the key-press menu."""

    say: str | None = None

    @classmethod
    def _channel_name(cls) -> str:
        return "voice"


class ConsoleParts(_Parts):
    """The printed block."""

    text: str | None = None

    @classmethod
    def _channel_name(cls) -> str:
        return "console"


class ReceiverTemplates(BaseModel):
    """Template overrides per channel of one receiver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack: SlackParts | None = None
    email: EmailParts | None = None
    sms: SmsParts | None = None
    voice: VoiceParts | None = None
    console: ConsoleParts | None = None

    def by_channel(self) -> dict[str, dict[str, str]]:
        """Channel -> the settings fields to override (channels without overrides left out)."""
        out: dict[str, dict[str, str]] = {}
        for channel in CHANNEL_FIELDS:
            parts: _Parts | None = getattr(self, channel)
            if parts is not None and parts.overrides():
                out[channel] = parts.overrides()
        return out


def _checker(channel: str) -> Callable[[str, str], object]:
    """How a channel compiles and tries one part; the call raises ValueError if broken."""
    if channel == "slack":
        from incidents.notify.channels.slack import compile_template as slack_compile

        return slack_compile
    if channel == "email":
        from incidents.notify.channels.email_render import EmailTemplates

        return lambda source, part: EmailTemplates(**{part: source})
    from incidents.notify.templates import compile_template

    variables: dict[str, Any]
    if channel == "sms":
        from incidents.notify.channels.sms import SMS_VARIABLES as variables
    elif channel == "voice":
        from incidents.notify.channels.voice import VOICE_VARIABLES as variables
    else:
        from incidents.notify.channels.console import CONSOLE_VARIABLES as variables
    return lambda source, part: compile_template(source, f"{channel} {part}", variables)
