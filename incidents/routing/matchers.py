"""Label matchers with Alertmanager's syntax and semantics.

`name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`; a set may be written
`{a="1", b=~"x|y"}` or as a comma-separated list. Values may be quoted (with `\\"`,
`\\\\` and `\\n` escapes) or bare. Regexes are anchored at both ends, and a label that is
absent matches as the empty string, as in Alertmanager.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from incidents.exceptions import ValidationFailed


class Op(StrEnum):
    """A matcher operator."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


@dataclass(frozen=True)
class Matcher:
    """One label matcher."""

    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, op: Op | str, value: str, *, where: str = "matcher") -> Matcher:
        """Build a matcher, compiling (and validating) its regex."""
        op = Op(op)
        regex = None
        if op in (Op.RE, Op.NRE):
            try:
                regex = re.compile(f"(?:{value})\\Z", re.DOTALL)
            except re.error as exc:
                raise ValidationFailed(
                    f"{where}: invalid regular expression {value!r}: {exc}", field=where
                ) from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when the label set satisfies this matcher."""
        actual = labels.get(self.name, "")
        if self.op is Op.EQ:
            return actual == self.value
        if self.op is Op.NE:
            return actual != self.value
        assert self._regex is not None
        hit = self._regex.match(actual) is not None
        return hit if self.op is Op.RE else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op.value}"{escaped}"'


def matches_all(matchers: list[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches."""
    return all(m.matches(labels) for m in matchers)


class _Reader:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.pos = 0
        self.where = where

    def fail(self, why: str) -> ValidationFailed:
        return ValidationFailed(
            f"{self.where}: {why} at position {self.pos} in {self.text!r}", field=self.where
        )

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def name(self) -> str:
        self.skip_space()
        if self.peek() == '"':
            return self.quoted()
        m = _NAME.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a label name")
        self.pos = m.end()
        return m.group(0)

    def op(self) -> Op:
        self.skip_space()
        for candidate in ("=~", "!~", "!=", "="):
            if self.text.startswith(candidate, self.pos):
                self.pos += len(candidate)
                return Op(candidate)
        raise self.fail("expected one of =, !=, =~, !~")

    def quoted(self) -> str:
        assert self.peek() == '"'
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated quoted value")
            ch = self.text[self.pos]
            if ch == "\\":
                nxt = self.text[self.pos + 1 : self.pos + 2]
                if nxt == "n":
                    out.append("\n")
                elif nxt in ('"', "\\"):
                    out.append(nxt)
                else:
                    out.append("\\" + nxt)
                self.pos += 2
                continue
            self.pos += 1
            if ch == '"':
                return "".join(out)
            out.append(ch)

    def value(self) -> str:
        self.skip_space()
        if self.peek() == '"':
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",}":
            self.pos += 1
        return self.text[start : self.pos].strip()


def parse_matcher(text: str, *, where: str = "matcher") -> Matcher:
    """Parse exactly one matcher."""
    found = parse_matchers(text, where=where)
    if len(found) != 1:
        raise ValidationFailed(f"{where}: expected exactly one matcher in {text!r}", field=where)
    return found[0]


def parse_matchers(text: str, *, where: str = "matchers") -> list[Matcher]:
    """Parse a matcher set such as `{alertname="Foo", severity=~"crit|warn"}`."""
    reader = _Reader(text, where)
    reader.skip_space()
    braced = reader.peek() == "{"
    if braced:
        reader.pos += 1
    result: list[Matcher] = []
    while True:
        reader.skip_space()
        if braced and reader.peek() == "}":
            reader.pos += 1
            break
        if not braced and reader.pos >= len(text):
            break
        name = reader.name()
        op = reader.op()
        value = reader.value()
        result.append(Matcher.create(name, op, value, where=where))
        reader.skip_space()
        if reader.peek() == ",":
            reader.pos += 1
            continue
        if braced:
            if reader.peek() != "}":
                raise reader.fail("expected ',' or '}'")
            reader.pos += 1
            break
        if reader.pos < len(text):
            raise reader.fail("expected ','")
    reader.skip_space()
    if reader.pos != len(text):
        raise reader.fail("unexpected text after the matchers")
    if not result:
        raise ValidationFailed(f"{where}: no matcher given", field=where)
    return result
