"""Rendering an incident email: one-line subject, plain-text body and HTML body.

Templates are Jinja templates run in a sandbox, because operators may override them in
the configuration. The HTML template autoescapes; the subject and text templates do not
(they are not markup). Undefined names are errors, and every template is compiled and
tried on a sample notification when the channel is built, so a broken override fails at
start-up instead of on the first page at 3 am.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from incidents.notify.base import Notification
from incidents.notify.templates import SAMPLE, check_names, render_text

SUBJECT_TEMPLATE = (
    "{{ prefix }}[{{ severity }}]{% if event != 'digest' %} #{{ incident_id }}{% endif %} "
    "{{ title }}"
)

TEXT_TEMPLATE = """\
{{ headline }}: {{ title }}

Incident:     #{{ incident_id }}
Severity:     {{ severity }}
Status:       {{ status }}
{% if root_cause %}
Root cause:   {{ root_cause }}{{ " (%s)" % root_reason if root_reason else "" }}
{% endif %}
{% if services %}
Services:     {{ services | join(", ") }}
{% endif %}
{% if blast_radius %}
Blast radius: {{ blast_radius | join(", ") }}
{% endif %}
{% if details %}

{% for line in details %}
- {{ line }}
{% endfor %}
{% endif %}
{% if url %}

{{ url }}
{% endif %}
"""

HTML_TEMPLATE = """\
<!DOCTYPE html>
<html>
<body style="font-family: sans-serif; font-size: 14px;">
<h2 style="margin: 0 0 12px 0;">{{ headline }}: {{ title }}</h2>
<table cellpadding="4" style="border-collapse: collapse;">
<tr><th align="left">Incident</th><td>#{{ incident_id }}</td></tr>
<tr><th align="left">Severity</th><td>{{ severity }}</td></tr>
<tr><th align="left">Status</th><td>{{ status }}</td></tr>
{% if root_cause %}
<tr><th align="left">Root cause</th><td>{{ root_cause }}\
{% if root_reason %} <em>({{ root_reason }})</em>{% endif %}</td></tr>
{% endif %}
{% if services %}
<tr><th align="left">Services</th><td>{{ services | join(", ") }}</td></tr>
{% endif %}
{% if blast_radius %}
<tr><th align="left">Blast radius</th><td>{{ blast_radius | join(", ") }}</td></tr>
{% endif %}
</table>
{% if details %}
<ul>
{% for line in details %}
<li>{{ line }}</li>
{% endfor %}
</ul>
{% endif %}
{% if link %}
<p><a href="{{ link }}">Open incident #{{ incident_id }}</a></p>
{% elif url %}
<p>{{ url }}</p>
{% endif %}
</body>
</html>
"""

# Subject prefix and body headline per event. The first mail of a thread has no prefix,
# so a mail client shows the incident's title as the thread's subject.
EVENTS: dict[str, tuple[str, str]] = {
    "opened": ("", "Incident opened"),
    "severity_raised": ("Severity raised: ", "Severity raised"),
    "reopened": ("Reopened: ", "Incident reopened"),
    "resolved": ("RESOLVED: ", "Incident resolved"),
    "updated": ("Update: ", "Incident updated"),
    "acknowledged": ("Acknowledged: ", "Incident acknowledged"),
    "status_changed": ("Status: ", "Status changed"),
    "severity_changed": ("Severity: ", "Severity changed"),
    "assigned": ("Assigned: ", "Incident assigned"),
    "note": ("Note: ", "Note added"),
    "digest": ("", "Daily digest"),
    "approval": ("Approval needed: ", "A playbook waits for approval"),
    "reminder": ("Reminder: ", "Still open and not acknowledged"),
}

# Long titles fold fine in a header, but a subject is for reading in a list.
MAX_SUBJECT = 250


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """The three rendered pieces of one email."""

    subject: str
    text: str
    html: str


def absolute_url(url: str, public_url: str) -> str:
    """The incident URL, made absolute with the public base URL when it is relative."""
    if url.startswith("/") and public_url:
        return public_url.rstrip("/") + url
    return url


def template_context(n: Notification, public_url: str = "") -> dict[str, Any]:
    """The names a template can use for one notification."""
    prefix, headline = EVENTS.get(n.event, ("", n.event.replace("_", " ").capitalize()))
    url = absolute_url(n.url, public_url)
    return {
        "incident_id": n.incident_id,
        "event": n.event,
        "prefix": prefix,
        "headline": headline,
        "severity": n.severity,
        "status": n.status,
        "title": n.title,
        "services": list(n.services),
        "root_cause": n.root_cause,
        "root_reason": n.root_reason,
        "blast_radius": list(n.blast_radius),
        "url": url,
        # Only a web address becomes a link: a relative path would resolve against the
        # mail client, and anything else (javascript:) has no business in an href.
        "link": url if url.startswith(("https://", "http://")) else "",
        "details": list(n.details),
        "target": n.target,
    }


def one_line(text: str) -> str:
    """Collapse whitespace (newlines included) so the text is a safe one-line header."""
    line = re.sub(r"\s+", " ", text).strip()
    if len(line) > MAX_SUBJECT:
        line = line[: MAX_SUBJECT - 1].rstrip() + "…"
    return line


class EmailTemplates:
    """Compiled subject, text and HTML templates (defaults or overrides)."""

    def __init__(
        self,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        public_url: str = "",
    ) -> None:
        """Compile the templates and try them once; raise ValueError if one is broken."""
        self.public_url = public_url
        plain = SandboxedEnvironment(
            autoescape=False,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        markup = SandboxedEnvironment(
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._defaults = (
            _compile(plain, "subject", SUBJECT_TEMPLATE),
            _compile(plain, "text", TEXT_TEMPLATE),
            _compile(markup, "html", HTML_TEMPLATE),
        )
        self._subject = _compile(plain, "subject", subject) if subject else self._defaults[0]
        self._text = _compile(plain, "text", text) if text else self._defaults[1]
        self._html = _compile(markup, "html", html) if html else self._defaults[2]
        known = template_context(SAMPLE, public_url)
        for which, source, env in (
            ("subject", subject, plain),
            ("text", text, plain),
            ("html", html, markup),
        ):
            if source:
                check_names(env, source, known, f"email {which}")
        try:
            context = template_context(SAMPLE, public_url)
            for template in (self._subject, self._text, self._html):
                template.render(context)
        except Exception as exc:  # jinja2's errors, and whatever a template's code raised
            raise ValueError(f"email template does not render: {exc}") from exc

    def render(self, n: Notification) -> RenderedEmail:
        """Render the three parts for one notification. An override that fails on this
        notification gives way to the built-in part (a page in the default wording beats
        none); a failing built-in part raises jinja2.TemplateError."""
        context = template_context(n, self.public_url)
        subject, text, html = (
            render_text(template, default, context, f"email {which}")
            for template, default, which in zip(
                (self._subject, self._text, self._html),
                self._defaults,
                ("subject", "text", "html"),
                strict=True,
            )
        )
        return RenderedEmail(subject=one_line(subject), text=text, html=html)


def _compile(env: SandboxedEnvironment, which: str, source: str) -> Template:
    try:
        return env.from_string(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ValueError(f"email {which} template is invalid{where}: {exc}") from exc
