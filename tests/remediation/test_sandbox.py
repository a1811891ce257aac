"""Templates cannot reach Python internals, alert data is never a template, and secrets
never reach the record."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from incidents.playbooks import templates
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.remediation.conftest import wait_run, wait_runs

CONTEXT = {"incident": {"title": "db down", "labels": {"a": "b"}}, "alerts": [], "steps": {}}

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ incident.__class__ }}",
    "{{ incident.title.__class__.__base__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ range(10**9) | list }}",
    "{{ incident.labels.update({'a': 'x'}) }}",
    "{{ config }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ incident|attr('__class__') }}",
    "{{ (incident.title * 100000) * 100000 }}",
]


@pytest.mark.parametrize("text", ESCAPES)
def test_the_usual_sandbox_escapes_fail(text: str) -> None:
    with pytest.raises(templates.TemplateProblem):
        templates.render(text, CONTEXT)
    assert CONTEXT["incident"]["labels"] == {"a": "b"}  # type: ignore[index]


def test_a_rendered_value_is_not_rendered_again() -> None:
    context = {"incident": {"title": "{{ ''.__class__ }}"}}
    assert templates.render("{{ incident.title }}", context) == "{{ ''.__class__ }}"


def test_an_undefined_name_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(templates.TemplateProblem, match="namespace"):
        templates.render("{{ incident.labels.namespace }}", CONTEXT)


def test_conditions_are_sandboxed_too() -> None:
    with pytest.raises(templates.TemplateProblem):
        templates.evaluate("''.__class__.__mro__", CONTEXT)
    assert templates.evaluate("{{ incident.title == 'db down' }}", CONTEXT)


SECRET = "s3cr3t-t0ken-value"
LEAKY = """
id: leaky
description: tries to put a secret on the record
triggers: [{event: incident_opened}]
steps:
  - name: note
    action: incident.annotate
    params: {message: "token is {{ secrets.api_token }} for {{ incident.service }}"}
  - name: bad
    action: incident.set_status
    params: {status: "{{ secrets.api_token }}"}
"""


def test_secrets_never_appear_in_the_timeline_the_api_or_the_logs(
    playbook_pipe: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pipe = playbook_pipe(
        {"playbooks": {"secrets": {"api_token": SECRET}}, "log_level": "DEBUG"}, leaky=LEAKY
    )
    pipe.post(alert("api-gateway", "ServiceDown", recent(1), "P1"))
    (incident,) = pipe.incidents()
    (run,) = wait_runs(pipe.client, incident["id"])
    run = wait_run(pipe.client, run["id"])
    assert run["status"] == "failed"
    note, bad = run["steps"]
    assert note["params"] == {"message": "token is [redacted] for api-gateway"}
    assert bad["status"] == "failed" and "status" in bad["error"]
    detail = pipe.client.get(
        f"/api/v1/incidents/{incident['id']}", headers={"Authorization": "Bearer test-token"}
    ).text
    assert "token is [redacted]" in detail
    for text in (str(run), detail, caplog.text):
        at = text.find(SECRET)
        assert at < 0, text[max(0, at - 300) : at + 50]
