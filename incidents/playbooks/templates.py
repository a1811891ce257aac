"""Sandboxed Jinja templates for step parameters, conditions and `if`.

Templates come from playbook files, and the values they read come from alerts, which
anyone who can fire an alert controls. So:

- the environment is Jinja's immutable sandbox: no attribute starting with `_`, no
  method that mutates, no Python internals (`__class__`, `__globals__`, `mro`);
- there are no globals at all (no `range`, `lipsum`, `cycler`, `joiner`, `namespace`):
  a template sees only the context we give it;
- an undefined name is an error, so a missing label fails the step instead of acting on
  an empty namespace;
- a rendered value is data, never rendered again: an alert label holding `{{ ... }}`
  stays that text;
- secrets are in the context as `secrets.NAME` and nowhere else; `redact` removes their
  values from anything recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

REDACTED = "[redacted]"
# The longest text one template may produce: far beyond a URL or a command argument.
MAX_RENDERED = 64 * 1024


class TemplateProblem(ValueError):
    """A template that does not compile, or that failed while rendering."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*` and `**` bounded: `'x' * 10**10` would otherwise
    fill the worker's memory from one line of a playbook."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Refuse products and powers whose result would be huge."""
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError(f"exponent {right} is too large")
            if isinstance(left, int | float) and abs(left) > 10**6 and right > 8:
                raise SecurityError("power too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_RENDERED:
                    raise SecurityError(
                        f"repeating a value {times} times passes {MAX_RENDERED} characters"
                    )
        return super().call_binop(context, operator, left, right)


def _environment() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False)
    env.globals.clear()
    return env


ENV = _environment()


def is_template(text: str) -> bool:
    """Whether a string has template syntax (else it is used as it is)."""
    return "{{" in text or "{%" in text or "{#" in text


def check(text: str) -> None:
    """Raise TemplateProblem when a template does not compile."""
    try:
        ENV.parse(text)
    except TemplateError as exc:
        raise TemplateProblem(f"template does not compile: {exc}") from None


def check_expression(text: str) -> None:
    """Raise TemplateProblem when a condition does not compile."""
    try:
        ENV.compile_expression(_strip(text))
    except TemplateError as exc:
        raise TemplateProblem(f"condition does not compile: {exc}") from None


def names_used(text: str) -> set[str]:
    """The top-level names a template reads (`steps`, `incident`, ...)."""
    try:
        tree = ENV.parse(text)
    except TemplateError:
        return set()
    return {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}


def _strip(text: str) -> str:
    # Conditions may be written bare (`steps.check.failed`) or as `{{ ... }}`.
    text = text.strip()
    if text.startswith("{{") and text.endswith("}}"):
        return text[2:-2].strip()
    return text


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in a parameter value (dicts and lists walked); others as-is."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            text = ENV.from_string(value).render(context)
        except TemplateError as exc:
            raise TemplateProblem(f"template failed: {exc}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise TemplateProblem(f"template failed: {type(exc).__name__}: {exc}") from None
        if len(text) > MAX_RENDERED:
            raise TemplateProblem(
                f"template rendered {len(text)} characters; at most {MAX_RENDERED}"
            )
        return text
    if isinstance(value, Mapping):
        return {str(k): render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def evaluate(expression: str, context: Mapping[str, Any]) -> bool:
    """The truth of a condition over the context."""
    try:
        return bool(ENV.compile_expression(_strip(expression))(**context))
    except TemplateError as exc:
        raise TemplateProblem(f"condition failed: {exc}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise TemplateProblem(f"condition failed: {type(exc).__name__}: {exc}") from None


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """The value with every secret's text replaced by [redacted] (dicts and lists walked)."""
    known = sorted((s for s in secrets if s), key=len, reverse=True)
    if not known:
        return value
    return _redact(value, known)


def _redact(value: Any, known: list[str]) -> Any:
    if isinstance(value, str):
        for secret in known:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {str(k): _redact(v, known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, known) for v in value]
    return value
