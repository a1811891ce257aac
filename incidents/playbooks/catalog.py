"""The playbook folder: every file read, validated and indexed by id.

One broken file fails the whole folder, naming each problem as `file:line: field:
message`: a remediation engine that silently skips a playbook it could not read would
leave an outage unfixed at 3 a.m. with nobody told why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from incidents.documents import Document, Problems, load_file
from incidents.exceptions import ConfigError, ValidationFailed
from incidents.routing.matchers import Matcher, matches_all, parse_matchers

from .document import Playbook, check_playbook
from .settings import PlaybookSettings

SUFFIXES = (".yaml", ".yml")
# A folder of more than this many files is a mistake (the wrong folder named).
MAX_FILES = 500


@dataclass(frozen=True)
class Loaded:
    """A valid playbook, where it came from, and its triggers' matchers compiled."""

    playbook: Playbook
    source: str
    matchers: tuple[tuple[str, tuple[Matcher, ...]], ...] = field(default=())

    def triggered_by(self, event: str, label_sets: Iterable[Mapping[str, str]]) -> bool:
        """Whether a trigger of this event matches one of the label sets."""
        sets = list(label_sets)
        for trigger_event, matchers in self.matchers:
            if trigger_event != event:
                continue
            if any(matches_all(list(matchers), labels) for labels in sets):
                return True
        return False


@dataclass(frozen=True)
class Catalog:
    """Every playbook of the folder, by id."""

    playbooks: dict[str, Loaded] = field(default_factory=dict)
    folder: str = ""

    def __len__(self) -> int:
        return len(self.playbooks)

    def get(self, playbook_id: str) -> Loaded | None:
        """The playbook of that id, or None."""
        return self.playbooks.get(playbook_id)

    def for_event(self, event: str) -> list[Loaded]:
        """The playbooks with a trigger on this event, in id order."""
        return [
            p
            for _, p in sorted(self.playbooks.items())
            if any(t.event == event for t in p.playbook.triggers)
        ]


def compile_loaded(playbook: Playbook, source: str) -> Loaded:
    """A Loaded with its triggers' matchers parsed."""
    compiled = tuple(
        (
            t.event,
            tuple(m for text in t.matchers for m in parse_matchers(text, where="matcher")),
        )
        for t in playbook.triggers
    )
    return Loaded(playbook, source, compiled)


def parse_document(document: Document, settings: PlaybookSettings) -> Playbook:
    """Validate one parsed file; ValidationFailed names every problem with its line."""
    problems = Problems("playbook", document)
    try:
        playbook = Playbook.model_validate(document.data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple("if" if part == "if_" else part for part in error["loc"])
            problems.add(loc, error["msg"].removeprefix("Value error, "))
        problems.fail()
    for path, message in check_playbook(playbook, settings.max_step_timeout_seconds):
        problems.add(path, message)
    problems.raise_if_any()
    return playbook


def load_folder(folder: str | Path, settings: PlaybookSettings) -> Catalog:
    """Read every *.yaml / *.yml file of the folder; ConfigError lists every problem."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"playbooks.folder {str(folder)!r} is not a folder")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    if len(files) > MAX_FILES:
        raise ConfigError(
            f"playbooks.folder {str(folder)!r} has {len(files)} files; at most {MAX_FILES}"
        )
    lines: list[str] = []
    found: dict[str, Loaded] = {}
    for path in files:
        try:
            document = load_file(path)
            playbook = parse_document(document, settings)
        except OSError as exc:
            lines.append(f"{path}: cannot read: {exc.strerror}")
            continue
        except ValidationFailed as exc:
            lines += describe_problems(str(path), exc)
            continue
        if playbook.id in found:
            other = found[playbook.id].source
            lines.append(f"{path}: id: playbook id {playbook.id!r} is also used by {other}")
            continue
        found[playbook.id] = compile_loaded(playbook, str(path))
    if lines:
        count = len(lines)
        raise ConfigError(
            f"playbooks in {folder} are invalid ({count} problem{'s' if count != 1 else ''}):\n  "
            + "\n  ".join(lines)
        )
    return Catalog(found, str(folder))


def describe_problems(source: str, exc: ValidationFailed) -> list[str]:
    """One `file:line: field: message` line per problem of a ValidationFailed."""
    errors: list[dict[str, Any]] = exc.extra.get("errors", [])
    if not errors or (len(errors) == 1 and errors[0]["field"] == "document"):
        return [exc.message]
    out = []
    for error in errors:
        line = error.get("line")
        where = f"{source}:{line}" if line is not None else source
        out.append(f"{where}: {error['field']}: {error['message']}")
    return out


_cache: dict[tuple[str, int], Catalog] = {}


def catalog_of(settings: PlaybookSettings) -> Catalog:
    """The configured folder's catalog, read once per settings object (empty without one)."""
    if not settings.enabled or not settings.folder:
        return Catalog()
    key = (settings.folder, id(settings))
    cached = _cache.get(key)
    if cached is None:
        cached = _cache[key] = load_folder(settings.folder, settings)
    return cached
