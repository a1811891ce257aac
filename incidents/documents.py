"""Strict YAML and JSON documents with errors that name the source, line and column.

YAML is composed by our own composer over libyaml's events, so that alias expansion and
nesting depth are counted before any Python object is built: a few hundred bytes of nested
aliases (a "billion laughs") or a body of unclosed brackets is refused, not expanded.
Only plain data is built (safe tags), and a mapping key written twice is an error.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import yaml

from incidents.exceptions import ValidationFailed

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

# Nodes that aliases may add to a document, beyond as many as the document writes out
# itself: shared defaults and merge keys stay far below it, while a billion-laughs
# document, whose expansion grows exponentially with its size, passes it in a few levels.
MAX_ALIAS_NODES: Final = 10_000
# Far deeper than any document we read, and shallow enough for a recursive composer.
MAX_DEPTH: Final = 64
# The longest rendering of a user's value in an error message.
QUOTE_LIMIT: Final = 80
# An error body with one entry per problem in a 10k-entry document helps nobody.
MAX_REPORTED_ERRORS: Final = 100

_quoter = reprlib.Repr()
_quoter.maxstring = QUOTE_LIMIT
_quoter.maxother = QUOTE_LIMIT
_quoter.maxlist = _quoter.maxtuple = _quoter.maxdict = _quoter.maxset = 5
_quoter.maxlevel = 2


def quote(value: object) -> str:
    """repr() of a user's value, bounded in time and length however large the value is."""
    text = _quoter.repr(value)
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 3] + "..."


def type_name(value: object) -> str:
    """A reader's name for the type of a parsed value."""
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


class DocumentLimitError(yaml.MarkedYAMLError):
    """A YAML document passes a safety limit: alias expansion, recursion or depth."""


@dataclass(frozen=True)
class Document:
    """Parsed data, where it came from, and (for YAML) its nodes for locating fields."""

    data: Any
    source: str
    is_file: bool = False
    root: yaml.Node | None = field(default=None, repr=False)

    def where(self, line: int | None, column: int | None = None) -> str:
        """`path:line:column` for a file, `source line L, column C` otherwise."""
        if line is None:
            return self.source
        if self.is_file:
            return f"{self.source}:{line}" + (f":{column}" if column is not None else "")
        return f"{self.source} line {line}" + (f", column {column}" if column is not None else "")

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest node found along a field path (YAML only)."""
        node = self.root
        line = None if node is None else node.start_mark.line + 1
        for position, part in enumerate(path):
            last = position == len(path) - 1
            found: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        # The key's own line for the field itself: its value may start below.
                        line = key.start_mark.line + 1
                        found = value
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                found = node.value[part]
                line = found.start_mark.line + 1
            if found is None or last:
                break
            node = found
        return line


def parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """Compose (within the limits) and construct one YAML document; raises yaml.YAMLError."""
    loader = _StrictLoader(text)
    try:
        node = loader.compose_single()
        if node is None:
            return None, None
        try:
            return node, loader.construct_document(node)
        except (ValueError, OverflowError) as exc:
            # A scalar that matched a tag's pattern but not its range: a 5,000-digit
            # integer, a timestamp in month 13.
            raise yaml.constructor.ConstructorError(
                None, None, f"a value cannot be read: {str(exc)[:QUOTE_LIMIT]}", None
            ) from None
    finally:
        loader.dispose()


def load_yaml(text: str, *, source: str, is_file: bool = False) -> Document:
    """Parse a YAML document; ValidationFailed names the line and column of a problem."""
    document = Document(None, source, is_file)
    try:
        root, data = parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # PyYAML quotes tags and tokens from the text: bound them too.
        problem = (exc.problem or exc.context or "invalid YAML")[: 2 * QUOTE_LIMIT]
        if "nesting depth" in problem:
            # Newer libyaml refuses deep nesting in its scanner, before our composer counts it.
            problem = f"nested deeper than {MAX_DEPTH} levels"
        if mark is None:
            syntax_error(document, problem)
        syntax_error(document, problem, mark.line + 1, mark.column + 1)
    except yaml.YAMLError as exc:
        syntax_error(document, str(exc)[:QUOTE_LIMIT])
    return Document(data, source, is_file, root)


def load_json(text: str, *, source: str, is_file: bool = False) -> Document:
    """Parse a JSON document; ValidationFailed names the line and column of a problem."""
    document = Document(None, source, is_file)
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_json_keys)
    except json.JSONDecodeError as exc:
        syntax_error(document, exc.msg, exc.lineno, exc.colno)
    except _DuplicateKeyError as exc:
        syntax_error(document, str(exc))
    except RecursionError:
        syntax_error(document, f"nested deeper than the parser allows (limit {MAX_DEPTH})")
    except ValueError as exc:
        syntax_error(document, f"a value cannot be read: {str(exc)[:QUOTE_LIMIT]}")
    return Document(data, source, is_file)


def load_file(path: str | Path) -> Document:
    """Read a file as JSON when it ends in .json, as YAML otherwise; errors name the file."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".json":
        return load_json(text, source=str(file), is_file=True)
    return load_yaml(text, source=str(file), is_file=True)


def syntax_error(
    document: Document, problem: str, line: int | None = None, column: int | None = None
) -> NoReturn:
    """Raise the ValidationFailed for a document that cannot be parsed at all."""
    message = f"{document.where(line, column)}: {problem}"
    entry: dict[str, Any] = {"field": "document", "message": message}
    extra: dict[str, Any] = {}
    if line is not None:
        entry["line"] = extra["line"] = line
    if column is not None:
        entry["column"] = extra["column"] = column
    raise ValidationFailed(message, field="document", errors=[entry], **extra) from None


class Problems:
    """Collects every problem in a document so that one error names them all, with lines."""

    def __init__(self, what: str, document: Document | None) -> None:
        self.what = what
        self.document = document
        self.items: list[dict[str, Any]] = []

    def add(self, path: Sequence[str | int], message: str) -> None:
        """Record one problem at a field path such as ("services", 3, "name")."""
        entry: dict[str, Any] = {"field": field_name(path), "message": message}
        if self.document is not None and path:
            line = self.document.line_of(path)
            if line is not None:
                entry["line"] = line
        self.items.append(entry)

    def raise_if_any(self) -> None:
        """Raise one ValidationFailed carrying every problem recorded, if there are any."""
        if self.items:
            self.fail()

    def fail(self) -> NoReturn:
        """Raise one ValidationFailed carrying every problem recorded so far."""
        count = len(self.items)
        shown = "; ".join(_describe(p) for p in self.items[:5])
        more = f"; and {count - 5} more" if count > 5 else ""
        where = f"{self.document.source}: " if self.document is not None else ""
        noun = "problem" if count == 1 else "problems"
        errors = self.items[:MAX_REPORTED_ERRORS]
        if count > MAX_REPORTED_ERRORS:
            first = self.items[0]["field"].split(".")[0].split("[")[0]
            errors.append(
                {"field": first, "message": f"{count - MAX_REPORTED_ERRORS} more not shown"}
            )
        raise ValidationFailed(
            f"{where}invalid {self.what} ({count} {noun}): {shown}{more}",
            field=self.items[0]["field"],
            errors=errors,
            error_count=count,
        )


def field_name(path: Sequence[str | int]) -> str:
    """Render a field path: ("services", 3, "name") -> services[3].name (keys bounded)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if len(part) <= QUOTE_LIMIT else part[: QUOTE_LIMIT - 3] + "..."
            out += f".{text}" if out else text
    return out or "document"


def _describe(problem: dict[str, Any]) -> str:
    line = problem.get("line")
    at = f" (line {line})" if line is not None else ""
    return f"{problem['field']}{at}: {problem['message']}"


class _DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""


def _reject_duplicate_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"duplicate key {quote(key)} in a JSON object")
        result[key] = value
    return result


def _limit(problem: str, mark: yaml.Mark | None) -> DocumentLimitError:
    return DocumentLimitError(problem=problem, problem_mark=mark)


class _StrictLoader(_BaseLoader):
    """libyaml's parser, our counting composer, and the safe constructor without duplicates."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._complete: dict[str, tuple[yaml.Node, int]] = {}
        self._open: set[str] = set()
        self._alias_nodes = 0
        self._written_nodes = 0

    def _next(self) -> Any:
        # The stubs type events loosely (and the C parser's marks as another class).
        return self.get_event()

    def _peek(self) -> Any:
        return self.peek_event()

    def _resolve(self, kind: type[yaml.Node], value: str | None, implicit: Any) -> str:
        tag: str = self.resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return tag

    def compose_single(self) -> yaml.Node | None:
        """The stream's only document as a node tree, or None for an empty stream."""
        self._next()
        node = None
        if not self.check_event(yaml.StreamEndEvent):
            start = self._next()
            node, _ = self._compose(0)
            self._next()
            if not self.check_event(yaml.StreamEndEvent):
                extra = self._next()
                raise yaml.composer.ComposerError(
                    "expected a single document in the stream",
                    start.start_mark,
                    "but found another document",
                    extra.start_mark,
                )
        self._next()
        return node

    def _compose(self, depth: int) -> tuple[yaml.Node, int]:
        """One node and its size once aliases are expanded."""
        if self.check_event(yaml.AliasEvent):
            return self._alias(self._next())
        self._written_nodes += 1
        event = self._peek()
        if depth > MAX_DEPTH:
            raise _limit(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        anchor = event.anchor
        if anchor is not None and (anchor in self._complete or anchor in self._open):
            raise yaml.composer.ComposerError(
                None, None, f"found duplicate anchor {quote(anchor)}", event.start_mark
            )
        if self.check_event(yaml.ScalarEvent):
            event = self._next()
            tag = event.tag
            if tag is None or tag == "!":
                tag = self._resolve(yaml.ScalarNode, event.value, event.implicit)
            node: yaml.Node = yaml.ScalarNode(
                tag, event.value, event.start_mark, event.end_mark, style=event.style
            )
            size = 1
        else:
            if anchor is not None:
                self._open.add(anchor)
            node, size = self._compose_collection(depth)
            self._open.discard(anchor or "")
        if anchor is not None:
            self._complete[anchor] = (node, size)
        return node, size

    def _compose_collection(self, depth: int) -> tuple[yaml.Node, int]:
        start = self._next()
        is_sequence = isinstance(start, yaml.SequenceStartEvent)
        kind: type[yaml.Node] = yaml.SequenceNode if is_sequence else yaml.MappingNode
        tag = start.tag
        if tag is None or tag == "!":
            tag = self._resolve(kind, None, start.implicit)
        node: yaml.SequenceNode | yaml.MappingNode
        if is_sequence:
            node = yaml.SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        else:
            node = yaml.MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        end_event = yaml.SequenceEndEvent if is_sequence else yaml.MappingEndEvent
        size = 1
        while not self.check_event(end_event):
            item, item_size = self._compose(depth + 1)
            size += item_size
            if is_sequence:
                node.value.append(item)
            else:
                value, value_size = self._compose(depth + 1)
                size += value_size
                node.value.append((item, value))
        node.end_mark = self._next().end_mark
        return node, size

    def _alias(self, event: Any) -> tuple[yaml.Node, int]:
        anchor = event.anchor
        if anchor in self._open:
            raise _limit(
                f"alias {quote(anchor)} refers to a node that contains it", event.start_mark
            )
        if anchor not in self._complete:
            raise yaml.composer.ComposerError(
                None, None, f"found undefined alias {quote(anchor)}", event.start_mark
            )
        node, size = self._complete[anchor]
        self._alias_nodes += size
        budget = MAX_ALIAS_NODES + self._written_nodes
        if self._alias_nodes > budget:
            raise _limit(
                f"aliases expand to more than {budget} nodes (an alias bomb?)", event.start_mark
            )
        return node, size

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """Build a mapping, refusing a key written twice (merge keys may still override)."""
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {quote(key)}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)
