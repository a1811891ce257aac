"""The two matcher grammars Alertmanager accepts, as plain parsers of text into triples.

- The UTF-8 grammar (Alertmanager 0.27 and later): tokens are `{`, `}`, `,`, the four
  operators, double-quoted strings with Go escapes, and unquoted runs of any character
  that is not white space or one of ``{}!=~,\\"'` ``. Names may be quoted too.
- The classic grammar: a comma-separated list (commas inside double quotes do not count)
  of `name op value`, where the name is a Prometheus label name and the value is bare or
  double-quoted with OpenMetrics escapes (`\\\\`, `\\"`, `\\n`).

Alertmanager's default ("fallback") mode takes the classic reading when there is one and
the UTF-8 reading otherwise; `incidents.routing.matchers` applies that rule. The parsers
here only split text; they never compile a regex.
"""

from __future__ import annotations

import re
import unicodedata

Triple = tuple[str, str, str]

OPERATORS = ("=~", "=", "!=", "!~")  # classic order: `=~` before `=`
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0")
_RESERVED = frozenset("{}!=~,\\\"'`")
_CLASSIC_SPACE = "\t\n\f\r "  # Go's `\s`
_CLASSIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SIMPLE_ESCAPES = {
    "a": 7,
    "b": 8,
    "f": 12,
    "n": 10,
    "r": 13,
    "t": 9,
    "v": 11,
    "\\": 92,
    '"': 34,
}


class SyntaxFailure(ValueError):
    """The text does not follow the grammar; the message says where and why."""


def is_space(ch: str) -> bool:
    """White space as Go's `unicode.IsSpace` defines it."""
    if ch in _GO_SPACE:
        return True
    return ord(ch) > 0xFF and unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def go_strip(text: str) -> str:
    """`text` without leading and trailing white space (Go's `strings.TrimSpace`)."""
    start, end = 0, len(text)
    while start < end and is_space(text[start]):
        start += 1
    while end > start and is_space(text[end - 1]):
        end -= 1
    return text[start:end]


def is_reserved(ch: str) -> bool:
    """A character that ends an unquoted token in the UTF-8 grammar."""
    return ch in _RESERVED or is_space(ch)


# -- the UTF-8 grammar ---------------------------------------------------------------------


def _lex(text: str) -> list[tuple[str, str, int]]:
    """Tokens as (kind, text, position); kinds are the punctuation itself, "q" and "u"."""
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    end = len(text)
    while pos < end:
        ch = text[pos]
        if is_space(ch):
            pos += 1
        elif ch in "{},":
            tokens.append((ch, ch, pos))
            pos += 1
        elif ch == "=":
            op = "=~" if text.startswith("=~", pos) else "="
            tokens.append((op, op, pos))
            pos += len(op)
        elif ch == "!":
            op = text[pos : pos + 2]
            if op not in ("!=", "!~"):
                raise SyntaxFailure(f"position {pos}: expected != or !~")
            tokens.append((op, op, pos))
            pos += 2
        elif ch == '"':
            start = pos
            pos += 1
            while pos < end and text[pos] != '"':
                pos += 2 if text[pos] == "\\" else 1
            if pos >= end:
                raise SyntaxFailure(f"position {start}: a quoted string has no closing quote")
            pos += 1
            tokens.append(("q", text[start:pos], start))
        elif not is_reserved(ch):
            start = pos
            while pos < end and not is_reserved(text[pos]):
                pos += 1
            tokens.append(("u", text[start:pos], start))
        else:
            raise SyntaxFailure(f"position {pos}: unexpected {ch!r}")
    return tokens


def go_unquote(quoted: str) -> str:
    """Undo Go's `strconv.Quote` for a double-quoted string; the result must be UTF-8."""
    body = quoted[1:-1]
    if "\n" in body:
        raise SyntaxFailure(f"{quoted!r}: a line feed inside quotes must be written \\n")
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            raise SyntaxFailure(f"{quoted!r}: unescaped double quote")
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        kind = body[i + 1 : i + 2]
        if kind in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[kind])
            i += 2
        elif kind in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[kind]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise SyntaxFailure(f"{quoted!r}: bad \\{kind} escape")
            value = int(digits, 16)
            if kind == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise SyntaxFailure(f"{quoted!r}: \\{kind}{digits} is not a character")
            else:
                out += chr(value).encode("utf-8")
            i += 2 + width
        elif kind in "01234567" and kind:
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits) or int(digits, 8) > 255:
                raise SyntaxFailure(f"{quoted!r}: bad octal escape")
            out.append(int(digits, 8))
            i += 4
        else:
            raise SyntaxFailure(f"{quoted!r}: unknown escape \\{kind}")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise SyntaxFailure(f"{quoted!r}: not valid UTF-8") from None


def parse_utf8(text: str) -> list[Triple]:
    """Matchers in the UTF-8 grammar, with optional braces and a trailing comma."""
    tokens = _lex(text)
    i = 0

    def peek() -> str:
        return tokens[i][0] if i < len(tokens) else ""

    def take(kinds: tuple[str, ...], wanted: str) -> tuple[str, str, int]:
        nonlocal i
        if peek() not in kinds:
            found = f"{tokens[i][1]!r} at position {tokens[i][2]}" if i < len(tokens) else "end"
            raise SyntaxFailure(f"expected {wanted}, found {found}")
        i += 1
        return tokens[i - 1]

    def literal(token: tuple[str, str, int]) -> str:
        return go_unquote(token[1]) if token[0] == "q" else token[1]

    braced = peek() == "{"
    i += braced
    found: list[Triple] = []
    while True:
        if not peek():
            if braced:
                raise SyntaxFailure("expected a closing brace, found end")
            break
        if peek() == "}":
            if not braced:
                raise SyntaxFailure("a closing brace without an opening one")
            i += 1
            break
        name = literal(take(("q", "u"), "a label name"))
        op = take(OPERATORS, "an operator (=, !=, =~ or !~)")[0]
        value = literal(take(("q", "u"), "a label value"))
        found.append((name, op, value))
        if peek() == ",":
            i += 1
        elif peek() not in ("", "}"):
            take((",", "}"), "a comma or closing brace")
    if i < len(tokens):
        raise SyntaxFailure(f"unexpected {tokens[i][1]!r} at position {tokens[i][2]}")
    return found


# -- the classic grammar -------------------------------------------------------------------


def _classic_unescape(raw: str, whole: str) -> str:
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    last = len(raw) - 1
    for index, ch in enumerate(raw):
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(ch, "\\" + ch))
        elif ch == "\\":
            if index < last:
                escaped = True
            else:
                out.append("\\")
        elif ch == '"':
            if not quoted or index < last:
                raise SyntaxFailure(f"bad matcher {whole!r}: unescaped double quote in the value")
            quoted = False
        else:
            out.append(ch)
    if quoted:
        raise SyntaxFailure(f"bad matcher {whole!r}: unescaped double quote in the value")
    return "".join(out)


def parse_classic_one(text: str) -> Triple:
    """One matcher in the classic grammar: `name op value`, spaces around each allowed."""
    rest = text.lstrip(_CLASSIC_SPACE)
    name = _CLASSIC_NAME.match(rest)
    if name is None:
        raise SyntaxFailure(f"bad matcher {text!r}: expected a label name first")
    rest = rest[name.end() :].lstrip(_CLASSIC_SPACE)
    op = next((o for o in OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise SyntaxFailure(
            f"bad matcher {text!r}: expected one of =, !=, =~, !~ after {name.group(0)!r}"
        )
    raw = rest[len(op) :].strip(_CLASSIC_SPACE)
    return name.group(0), op, _classic_unescape(raw, text)


def parse_classic(text: str) -> list[Triple]:
    """A comma-separated list in the classic grammar; one `{` and one `}` are optional."""
    text = text.removeprefix("{").removesuffix("}")
    parts: list[str] = []
    current: list[str] = []
    inside = escaped = False
    for ch in text:
        if ch == "," and not inside:
            parts.append("".join(current))
            current = []
            continue
        if ch == '"':
            if escaped:
                escaped = False
            else:
                inside = not inside
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        current.append(ch)
    tail = go_strip("".join(current))
    if tail:
        parts.append(tail)
    return [parse_classic_one(part) for part in parts]
