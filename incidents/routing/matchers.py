"""Label matchers with Alertmanager's syntax and semantics.

`name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`; a set may be written
`{a="1", b=~"x|y"}` or as a comma-separated list. Text is read as Alertmanager reads it by
default: with the classic grammar where that succeeds, otherwise with the UTF-8 grammar
(see `matcher_syntax`). So `alertname=="X"` and a stray double quote are errors, as in
amtool.

Regexes are RE2, as Alertmanager's are (Go's regexp is RE2): matching takes linear time,
so no pattern can stall the service, and a pattern RE2 refuses (backreferences,
lookaround) is refused here with the matcher named. Regexes are anchored at both ends,
and a label that is absent matches as the empty string, as in Alertmanager.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import re2

from incidents.exceptions import ValidationFailed

from .matcher_syntax import (
    SyntaxFailure,
    Triple,
    is_reserved,
    parse_classic,
    parse_classic_one,
    parse_utf8,
)


class Op(StrEnum):
    """A matcher operator."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


def _options() -> Any:
    options = re2.Options()
    # Errors reach the caller as exceptions; RE2's own stderr log would only add noise.
    options.log_errors = False
    return options


_RE2_OPTIONS = _options()


def compile_regex(pattern: str, *, where: str = "matcher", shown: str | None = None) -> Any:
    """Compile a user's regex with RE2, anchored at both ends as Alertmanager does."""
    try:
        return re2.compile(f"^(?:{pattern})$", _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        subject = shown if shown is not None else repr(pattern)
        raise ValidationFailed(
            f"{where}: invalid regular expression in {subject}: {reason} "
            "(the syntax is RE2's, as in Alertmanager: no backreferences or lookaround)",
            field=where,
        ) from None


def _go_quote(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


@dataclass(frozen=True)
class Matcher:
    """One label matcher."""

    name: str
    op: Op
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, op: Op | str, value: str, *, where: str = "matcher") -> Matcher:
        """Build a matcher, compiling (and validating) its regex."""
        op = Op(op)
        if not name:
            raise ValidationFailed(f"{where}: the label name is empty", field=where)
        regex = None
        if op in (Op.RE, Op.NRE):
            shown = str(cls(name, op, value))
            regex = compile_regex(value, where=where, shown=shown)
        return cls(name, op, value, regex)

    @property
    def is_regex(self) -> bool:
        """True for `=~` and `!~`."""
        return self.op in (Op.RE, Op.NRE)

    @property
    def is_equal(self) -> bool:
        """True for `=` and `=~` (Alertmanager's `isEqual`)."""
        return self.op in (Op.EQ, Op.RE)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when the label set satisfies this matcher."""
        actual = labels.get(self.name, "")
        if self.op is Op.EQ:
            return actual == self.value
        if self.op is Op.NE:
            return actual != self.value
        hit = self._regex.search(actual) is not None
        return hit if self.op is Op.RE else not hit

    def __str__(self) -> str:
        # As Alertmanager prints matchers: both parsers read this form back unchanged.
        if any(is_reserved(ch) for ch in self.name):
            return f"{_go_quote(self.name)}{self.op.value}{_go_quote(self.value)}"
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op.value}"{escaped}"'


def matches_all(matchers: list[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches."""
    return all(m.matches(labels) for m in matchers)


def _build(triples: list[Triple], where: str) -> list[Matcher]:
    return [Matcher.create(name, op, value, where=where) for name, op, value in triples]


def _read(text: str, where: str, classic: Any, utf8: Any) -> list[Matcher]:
    """Alertmanager's fallback rule: the classic reading if it works, else the UTF-8 one."""
    try:
        return _build(classic(text), where)
    except (SyntaxFailure, ValidationFailed) as exc:
        first: Exception = exc
    try:
        return _build(utf8(text), where)
    except (SyntaxFailure, ValidationFailed) as exc:
        second: Exception = exc
    # Neither reading works. A refused regex says more than a syntax error does.
    for error in (first, second):
        if isinstance(error, ValidationFailed):
            raise error
    reason = str(first)
    context = "" if repr(text) in reason else f" in {text!r}"
    raise ValidationFailed(f"{where}: {reason}{context}", field=where)


def _utf8_one(text: str) -> list[Triple]:
    found = parse_utf8(text)
    if len(found) != 1:
        raise SyntaxFailure(f"expected exactly one matcher, found {len(found)}")
    return found


def parse_matcher(text: str, *, where: str = "matcher") -> Matcher:
    """Parse exactly one matcher, as Alertmanager reads one (a filter, say): no braces."""
    if text.startswith("{") or text.endswith("}"):
        raise ValidationFailed(
            f"{where}: one matcher is expected here, without braces: {text!r}", field=where
        )
    [found] = _read(text, where, lambda t: [parse_classic_one(t)], _utf8_one)
    return found


def parse_matchers(text: str, *, where: str = "matchers") -> list[Matcher]:
    """Parse a matcher set such as `{alertname="Foo", severity=~"crit|warn"}`."""
    found = _read(text, where, parse_classic, parse_utf8)
    if not found:
        raise ValidationFailed(f"{where}: no matcher given", field=where)
    return found
