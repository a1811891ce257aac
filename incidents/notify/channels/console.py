"""The console channel: a readable block per notification on a text stream.

For development and demos: no provider, nothing to configure, and it always succeeds.
It writes with `print` rather than `logging` so the block reads the same whatever the
log format (JSON lines in production) and is never filtered by a log level.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict

from incidents.notify.base import Notification, SendResult, register
from incidents.notify.templates import compile_template, render_text, template_context

DEFAULT_TEMPLATE = """\
=== {{ kind }} {{ severity }} #{{ incident_id }} {{ event_text }}: {{ title }}\
{% if where %} on {{ where }}{% endif %} ===
{% if root_cause %}root cause: {{ root_cause }}{% if root_reason %} ({{ root_reason }}){% endif %}
{% endif %}\
{% if services %}services: {{ services | join(', ') }}
{% endif %}\
{% if blast_radius %}blast radius: {{ blast_radius | join(', ') }}
{% endif %}\
{% for line in details %}  - {{ line }}
{% endfor %}\
{% if url %}link: {{ url }}
{% endif %}"""
EVENT_TEXT = {
    "opened": "opened",
    "severity_raised": "severity raised",
    "reopened": "reopened",
    "resolved": "resolved",
    "updated": "updated",
    "reminder": "reminder, still not acknowledged",
}


CONSOLE_VARIABLES = {"kind": "PAGE", "event_text": "opened"}


class ConsoleSettings(BaseModel):
    """Where the console channel writes and, optionally, its own template."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    # None: the process's stdout at the time of each send (tests swap it).
    stream: Any = None
    template: str = ""


class ConsoleNotifier:
    """Prints one block per notification."""

    name = "console"

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self._default = compile_template(DEFAULT_TEMPLATE, "console", CONSOLE_VARIABLES)
        self._template = (
            compile_template(settings.template, "console", CONSOLE_VARIABLES)
            if settings.template
            else self._default
        )

    def render(self, n: Notification) -> str:
        """The block for one notification, without a trailing newline."""
        context = template_context(n)
        context.update(
            kind="RESOLVED" if n.event == "resolved" else "PAGE",
            event_text=EVENT_TEXT.get(n.event, n.event),
        )
        return render_text(self._template, self._default, context, "console").rstrip("\n")

    def send(self, notification: Notification) -> SendResult:
        """Write the block; a console never refuses."""
        stream: TextIO = self.settings.stream or sys.stdout
        print(self.render(notification), file=stream, flush=True)
        return SendResult(ok=True, provider_id=f"console-{notification.delivery_id}")


@register("console")
def build_console(settings: Any) -> ConsoleNotifier:
    """The console channel; settings may be None, a mapping or `ConsoleSettings`."""
    if isinstance(settings, ConsoleSettings):
        return ConsoleNotifier(settings)
    if settings is None:
        return ConsoleNotifier(ConsoleSettings())
    if isinstance(settings, Mapping):
        return ConsoleNotifier(ConsoleSettings.model_validate(dict(settings)))
    raise TypeError(f"expected ConsoleSettings or a mapping, got {type(settings).__name__}")
