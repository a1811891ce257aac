"""The service graph document: its schema, its validation, and what changed between two.

The document is `{"services": [{"name", "team", "tier", "depends_on", "labels"}, ...]}`.
Validation names every problem at once, by field path (and line, for YAML); values quoted
in messages are bounded, so an error never echoes a huge value back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from incidents.documents import Document, Problems, quote, type_name

SERVICE_KEYS: Final = ("name", "team", "tier", "depends_on", "labels")
# How many names a change summary lists per kind of change.
SUMMARY_NAMES: Final = 10

Tier = str | int


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One validated service: its attributes and what it depends on."""

    name: str
    team: str | None
    tier: Tier | None
    labels: tuple[tuple[str, str], ...]
    depends_on: tuple[str, ...]

    def to_entry(self) -> dict[str, Any]:
        """The service as it appears in a canonical document."""
        return {
            "name": self.name,
            "team": self.team,
            "tier": self.tier,
            "depends_on": sorted(self.depends_on),
            "labels": dict(self.labels),
        }


def validate_graph(doc: object, document: Document | None = None) -> list[ServiceSpec]:
    """Check a graph document and return its services; raise once, naming every problem."""
    problems = Problems("service graph", document)
    if doc is None:
        problems.add((), "the document is empty; expected a mapping with a 'services' list")
        problems.fail()
    if not isinstance(doc, Mapping):
        problems.add((), f"expected a mapping with a 'services' list, got {type_name(doc)}")
        problems.fail()
    for key in doc:
        if key != "services":
            problems.add(
                (str(key),), f"unknown top-level key {quote(key)}; the document holds 'services'"
            )
    if "services" not in doc:
        problems.add(("services",), "required: a list of services")
        problems.fail()
    items = doc["services"]
    if not isinstance(items, list | tuple):
        problems.add(("services",), f"must be a list of services, got {type_name(items)}")
        problems.fail()

    first_index: dict[str, int] = {}
    pending_refs: list[tuple[tuple[str | int, ...], str, str]] = []
    services: list[ServiceSpec] = []
    for index, item in enumerate(items):
        service = _validate_service(index, item, first_index, pending_refs, problems)
        if service is not None:
            services.append(service)
    for path, name, dependency in pending_refs:
        if dependency not in first_index:
            problems.add(
                path, f"service {quote(name)} depends on unknown service {quote(dependency)}"
            )
    problems.raise_if_any()
    return services


def _validate_service(
    index: int,
    item: object,
    first_index: dict[str, int],
    pending_refs: list[tuple[tuple[str | int, ...], str, str]],
    problems: Problems,
) -> ServiceSpec | None:
    """Check one entry of `services`; record problems and return it when it is usable."""
    where: tuple[str | int, ...] = ("services", index)
    if not isinstance(item, Mapping):
        problems.add(where, f"each service must be a mapping, got {type_name(item)}")
        return None
    ok = True
    raw_name = item.get("name")
    name: str | None = None
    if "name" not in item:
        problems.add((*where, "name"), "required: a non-empty string")
        ok = False
    elif not isinstance(raw_name, str):
        problems.add((*where, "name"), f"must be a string, got {type_name(raw_name)}")
        ok = False
    elif not raw_name.strip():
        problems.add((*where, "name"), "must not be empty")
        ok = False
    elif raw_name != raw_name.strip():
        problems.add((*where, "name"), f"{quote(raw_name)} has leading or trailing whitespace")
        ok = False
    elif raw_name in first_index:
        problems.add(
            (*where, "name"),
            f"duplicate service name {quote(raw_name)} "
            f"(first defined at services[{first_index[raw_name]}])",
        )
        ok = False
    else:
        name = raw_name
        first_index[name] = index
    label = f"service {quote(name)}" if name is not None else f"services[{index}]"

    for key in item:
        if key not in SERVICE_KEYS:
            problems.add(
                (*where, str(key)),
                f"{label} has unknown key {quote(key)} (allowed: {', '.join(SERVICE_KEYS)})",
            )
            ok = False

    team = item.get("team")
    if team is not None and (not isinstance(team, str) or not team.strip()):
        problems.add(
            (*where, "team"), f"{label}: team must be a non-empty string, got {quote(team)}"
        )
        ok = False

    tier = item.get("tier")
    if tier is not None and (isinstance(tier, bool) or not isinstance(tier, str | int)):
        problems.add(
            (*where, "tier"), f"{label}: tier must be a string or an integer, got {quote(tier)}"
        )
        ok = False
    elif isinstance(tier, str) and not tier.strip():
        problems.add((*where, "tier"), f"{label}: tier must not be an empty string")
        ok = False

    labels, labels_ok = _validate_labels(where, label, item.get("labels"), problems)
    depends_on, deps_ok = _validate_depends_on(
        where, label, raw_name, item.get("depends_on"), problems
    )
    if name is not None:
        pending_refs.extend((path, name, dependency) for path, dependency in depends_on)
    if not (ok and labels_ok and deps_ok) or name is None:
        return None
    return ServiceSpec(
        name=name,
        team=team,
        tier=tier,
        labels=tuple(sorted(labels)),
        depends_on=tuple(dependency for _, dependency in depends_on),
    )


def _validate_labels(
    where: tuple[str | int, ...], label: str, raw: object, problems: Problems
) -> tuple[list[tuple[str, str]], bool]:
    """The valid labels as (name, value) pairs, and whether all of them were."""
    labels: list[tuple[str, str]] = []
    if raw is None:
        return labels, True
    if not isinstance(raw, Mapping):
        problems.add((*where, "labels"), f"{label}: labels must be a mapping, got {type_name(raw)}")
        return labels, False
    ok = True
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            problems.add(
                (*where, "labels"), f"{label}: label names must be non-empty strings: {quote(key)}"
            )
            ok = False
        elif not isinstance(value, str):
            problems.add(
                (*where, "labels", key),
                f"{label}: label {quote(key)} must be a string, got {quote(value)} (quote it)",
            )
            ok = False
        else:
            labels.append((key, value))
    return labels, ok


def _validate_depends_on(
    where: tuple[str | int, ...], label: str, name: object, raw: object, problems: Problems
) -> tuple[list[tuple[tuple[str | int, ...], str]], bool]:
    """The valid dependencies, each with its field path, and whether all of them were."""
    depends_on: list[tuple[tuple[str | int, ...], str]] = []
    if raw is None:
        return depends_on, True
    if not isinstance(raw, list | tuple):
        problems.add(
            (*where, "depends_on"),
            f"{label}: depends_on must be a list of service names, got {type_name(raw)}",
        )
        return depends_on, False
    ok = True
    seen: set[str] = set()
    for position, dependency in enumerate(raw):
        path = (*where, "depends_on", position)
        if not isinstance(dependency, str) or not dependency:
            problems.add(
                path, f"{label}: dependencies must be service names, got {quote(dependency)}"
            )
            ok = False
        elif dependency == name:
            problems.add(path, f"{label} depends on itself")
            ok = False
        elif dependency in seen:
            problems.add(path, f"{label} lists dependency {quote(dependency)} more than once")
            ok = False
        else:
            seen.add(dependency)
            depends_on.append((path, dependency))
    return depends_on, ok


def summarize_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], *, names: int = SUMMARY_NAMES
) -> dict[str, Any]:
    """Services added, removed and changed between two canonical documents: counts and names."""
    before = {entry["name"]: entry for entry in old.get("services", [])}
    after = {entry["name"]: entry for entry in new.get("services", [])}
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    changed = sorted(n for n in after.keys() & before.keys() if after[n] != before[n])

    def part(found: list[str]) -> dict[str, Any]:
        return {"count": len(found), "names": found[:names]}

    return {"added": part(added), "removed": part(removed), "changed": part(changed)}


def describe_changes(summary: Mapping[str, Any]) -> str:
    """One line for people: `added 2 (a, b), removed 0, changed 1 (c)`."""
    parts = []
    for kind in ("added", "removed", "changed"):
        count = summary[kind]["count"]
        shown = summary[kind]["names"]
        more = ", ..." if count > len(shown) else ""
        parts.append(f"{kind} {count}" + (f" ({', '.join(shown)}{more})" if shown else ""))
    return ", ".join(parts)
