"""Message templates every channel shares: the sandbox, compiling with a trial render,
rendering with a fallback, the variables a template sees, and the sample notification
that every template is tried against when its channel is built.

Templates are Jinja2 in the sandbox with unknown variables as errors, so a typo fails at
start-up, not on the first page at 3 a.m.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, meta
from jinja2.sandbox import SandboxedEnvironment

from incidents.notify.base import Notification

log = logging.getLogger(__name__)

SAMPLE = Notification(
    delivery_id=1,
    incident_id=1,
    event="opened",
    severity="P1",
    status="open",
    title="Sample",
    services=("sample",),
    root_cause="sample",
    root_reason="sample",
    blast_radius=("downstream",),
    url="https://incidents.example/incidents/1",
    target="",
    details=("sample",),
)


_environment = SandboxedEnvironment(
    # Plain text, not HTML; an unknown variable is a mistake to report, not a blank.
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=False,
)


def compile_template(
    source: str,
    name: str,
    extra: Mapping[str, Any] | None = None,
    *,
    trial: Mapping[str, Any] | None = None,
) -> Template:
    """Compile a sandboxed text template and try it on a sample; errors raise ValueError.

    `extra` names the channel's own variables, so a misspelt one fails here, at build(),
    and not when a page goes out. A channel whose templates see other variables passes
    them for SAMPLE as `trial` instead.
    """
    try:
        template = _environment.from_string(source)
    except Exception as exc:  # jinja2 raises TemplateSyntaxError and friends
        raise ValueError(f"{name} template does not compile: {exc}") from exc
    context = trial if trial is not None else {**template_context(SAMPLE), **(extra or {})}
    check_names(_environment, source, context, name)
    try:
        template.render(context)
    except Exception as exc:
        raise ValueError(f"{name} template fails on a sample notification: {exc}") from exc
    return template


def check_names(environment: Environment, source: str, known: Mapping[str, Any], name: str) -> None:
    """Raise ValueError for a variable the template reads that no notification has.

    The trial render only walks the branches the sample takes; this looks at every one,
    so `{% if event == 'resolved' %}{{ typo }}{% endif %}` fails at start-up too.
    """
    unknown = (
        meta.find_undeclared_variables(environment.parse(source))
        - set(known)
        - set(environment.globals)
    )
    if unknown:
        raise ValueError(
            f"{name} template reads unknown variable(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def render_text(
    template: Template, fallback: Template, context: Mapping[str, Any], name: str
) -> str:
    """Render an operator's template; if it fails on this notification, the built-in one.

    A page with the default wording beats no page at all.
    """
    try:
        return template.render(context)
    except Exception:
        if template is fallback:
            raise
        log.warning("%s template failed; sending the built-in text", name, exc_info=True)
        return fallback.render(context)


def template_context(n: Notification) -> dict[str, Any]:
    """The variables every channel template sees."""
    where = n.root_cause or (n.services[0] if n.services else "")
    others = sorted((set(n.services) | set(n.blast_radius)) - {where})
    if where and f" on {where}" in n.title:
        where = ""  # incident titles already say "<alert> on <root>"
    return {
        "incident_id": n.incident_id,
        "event": n.event,
        "severity": n.severity,
        "status": n.status,
        "title": n.title,
        "services": list(n.services),
        "root_cause": n.root_cause,
        "root_reason": n.root_reason,
        "blast_radius": list(n.blast_radius),
        "url": n.url,
        "details": list(n.details),
        # The service to name, and how many more are affected.
        "where": where,
        "others": len(others),
    }
