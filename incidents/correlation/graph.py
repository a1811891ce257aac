"""The service dependency graph: an immutable, validated graph where A -> B means A depends on B.

This is the only module that imports networkx. The graph document, as JSON or YAML, is
`{"services": [{"name", "team", "tier", "depends_on", "labels"}, ...]}`; `to_document()`
returns the same shape in canonical order, and `digest` is the sha256 of that canonical form.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Generic, NoReturn, TypeVar

import networkx as nx
import yaml

from incidents.exceptions import NotFound, ValidationFailed

try:
    from yaml import CSafeLoader as _YamlBaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _YamlBaseLoader  # type: ignore[assignment]

SERVICE_KEYS: Final = ("name", "team", "tier", "depends_on", "labels")
MAX_REPORTED_CYCLES: Final = 20
# An API error body with one entry per broken reference in a 10k-service upload helps nobody.
MAX_REPORTED_ERRORS: Final = 100
# Bounds memory: a cached ancestor set of a shared database can hold every service.
CACHE_SIZE: Final = 1024
SEVERITY_ORDER: Final = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}

Tier = str | int
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Service:
    """One validated service: its attributes and what it depends on."""

    name: str
    team: str | None
    tier: Tier | None
    labels: tuple[tuple[str, str], ...]
    depends_on: tuple[str, ...]


class _LRU(Generic[K, V]):
    """A small thread-safe least-recently-used cache of computed values."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        """Return the cached value for key, computing and storing it on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        # Computed outside the lock: two threads may both compute a miss, which is harmless
        # because the graph is immutable, and no reader waits behind a slow ancestors() call.
        value = compute()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


class ServiceGraph:
    """An immutable service dependency graph; an edge A -> B means A depends on B."""

    __slots__ = (
        "_ancestors",
        "_cycles",
        "_descendants",
        "_digest",
        "_graph",
        "_names",
        "_neighbours",
        "_services",
    )

    _graph: Any
    _services: dict[str, _Service]
    _names: tuple[str, ...]
    _neighbours: dict[str, tuple[str, ...]]
    _digest: str
    _ancestors: _LRU[str, tuple[str, ...]]
    _descendants: _LRU[str, frozenset[str]]
    _cycles: _LRU[int, tuple[tuple[str, ...], ...]]

    def __init__(self, services: Iterable[_Service]) -> None:
        """Build from already validated services; use from_document() or empty() instead."""
        by_name = {service.name: service for service in services}
        graph = nx.DiGraph()
        graph.add_nodes_from(by_name)
        graph.add_edges_from((s.name, dep) for s in by_name.values() for dep in s.depends_on)
        nx.freeze(graph)
        names = tuple(sorted(by_name))
        # Precomputed undirected adjacency keeps within_hops() a tight loop over plain tuples.
        neighbours = {
            name: tuple(dict.fromkeys([*graph.succ[name], *graph.pred[name]])) for name in names
        }
        init = object.__setattr__
        init(self, "_graph", graph)
        init(self, "_services", by_name)
        init(self, "_names", names)
        init(self, "_neighbours", neighbours)
        init(self, "_ancestors", _LRU[str, tuple[str, ...]](CACHE_SIZE))
        init(self, "_descendants", _LRU[str, frozenset[str]](CACHE_SIZE))
        init(self, "_cycles", _LRU[int, tuple[tuple[str, ...], ...]](8))
        init(self, "_digest", _digest_of(self.to_document()))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        """Refuse to change the graph: build a new one instead."""
        raise AttributeError(f"ServiceGraph is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        """Refuse to change the graph: build a new one instead."""
        raise AttributeError(f"ServiceGraph is immutable; cannot delete {name!r}")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> ServiceGraph:
        """A graph with no services."""
        return cls(())

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ServiceGraph:
        """Validate a graph document and build it; ValidationFailed names every problem."""
        return cls(_validate(doc))

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "YAML") -> ServiceGraph:
        """Parse and validate a YAML graph document; syntax errors name the line and column."""
        try:
            # A SafeLoader subclass: it builds only plain data, never arbitrary objects.
            doc = yaml.load(text, Loader=_StrictYamlLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            if mark is None:
                _raise_parse_error(f"{source}: {problem}", None, None)
            _raise_parse_error(
                f"{source} line {mark.line + 1}, column {mark.column + 1}: {problem}",
                mark.line + 1,
                mark.column + 1,
            )
        except yaml.YAMLError as exc:
            _raise_parse_error(f"{source}: {exc}", None, None)
        return cls(_validate(doc, source=source))

    @classmethod
    def from_json(cls, text: str, *, source: str = "JSON") -> ServiceGraph:
        """Parse and validate a JSON graph document; syntax errors name the line and column."""
        try:
            doc = json.loads(text, object_pairs_hook=_reject_duplicate_json_keys)
        except json.JSONDecodeError as exc:
            _raise_parse_error(
                f"{source} line {exc.lineno}, column {exc.colno}: {exc.msg}", exc.lineno, exc.colno
            )
        except _DuplicateKey as exc:
            _raise_parse_error(f"{source}: {exc}", None, None)
        return cls(_validate(doc, source=source))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ServiceGraph:
        """Load a graph file: JSON when it ends in .json, YAML otherwise; errors name the file."""
        file = Path(path)
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() == ".json":
            return cls.from_json(text, source=str(file))
        return cls.from_yaml(text, source=str(file))

    # -- identity and export ------------------------------------------------------------------

    @property
    def digest(self) -> str:
        """The sha256 (hex) of the canonical document; equal graphs have equal digests."""
        return self._digest

    @property
    def version(self) -> str:
        """The same as digest: lets a replica tell whether its cached graph is current."""
        return self._digest

    def to_document(self) -> dict[str, Any]:
        """The graph document: services sorted by name, depends_on and labels sorted."""
        services = []
        for name in self._names:
            service = self._services[name]
            services.append(
                {
                    "name": name,
                    "team": service.team,
                    "tier": service.tier,
                    "depends_on": sorted(service.depends_on),
                    "labels": dict(service.labels),
                }
            )
        return {"services": services}

    def __eq__(self, other: object) -> bool:
        """Graphs are equal when their canonical documents are."""
        if not isinstance(other, ServiceGraph):
            return NotImplemented
        return self._digest == other._digest

    def __hash__(self) -> int:
        """Hash by digest, consistent with equality."""
        return hash(self._digest)

    def __reduce__(self) -> tuple[Callable[[Mapping[str, Any]], ServiceGraph], tuple[Any]]:
        """Pickle and copy as the canonical document; the caches are rebuilt on demand."""
        return (ServiceGraph.from_document, (self.to_document(),))

    def __repr__(self) -> str:
        """A short summary: counts and the start of the digest."""
        edges = self._graph.number_of_edges()
        return (
            f"<ServiceGraph services={len(self._names)} edges={edges} digest={self._digest[:12]}>"
        )

    # -- lookups ------------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        """True when a service of this name is in the graph."""
        return isinstance(name, str) and name in self._services

    def __len__(self) -> int:
        """The number of services."""
        return len(self._names)

    def services(self) -> list[str]:
        """Every service name, sorted."""
        return list(self._names)

    def node(self, name: str) -> dict[str, Any]:
        """The attributes of one service (name, team, tier, labels); NotFound if absent."""
        service = self._services.get(name)
        if service is None:
            raise NotFound(f"service {name!r} is not in the service graph", field="service")
        return {
            "name": service.name,
            "team": service.team,
            "tier": service.tier,
            "labels": dict(service.labels),
        }

    def dependencies(self, name: str) -> list[str]:
        """The services this one depends on directly, sorted; [] for an unknown service."""
        if name not in self._services:
            return []
        return sorted(self._graph.succ[name])

    def dependents(self, name: str) -> list[str]:
        """The services that depend on this one directly, sorted; [] for an unknown service."""
        if name not in self._services:
            return []
        return sorted(self._graph.pred[name])

    # -- neighbourhoods -----------------------------------------------------------------------

    def within_hops(self, name: str, hops: int) -> dict[str, int]:
        """Services within `hops` edges of name in either direction, mapped to their distance."""
        _check_hops(hops, "hops")
        found = {name: 0}
        if name not in self._neighbours:
            return found
        adjacency = self._neighbours
        frontier = [name]
        # Level by level so the search stops at `hops` no matter how large the graph is.
        for depth in range(1, hops + 1):
            next_frontier = []
            for current in frontier:
                for neighbour in adjacency[current]:
                    if neighbour not in found:
                        found[neighbour] = depth
                        next_frontier.append(neighbour)
            if not next_frontier:
                break
            frontier = next_frontier
        return found

    def distance(self, a: str, b: str, max_hops: int) -> int | None:
        """Undirected hop distance between a and b if it is at most max_hops, else None."""
        _check_hops(max_hops, "max_hops")
        if a == b:
            return 0
        if a not in self._neighbours or b not in self._neighbours:
            return None
        adjacency = self._neighbours
        seen_a, seen_b = {a}, {b}
        frontier_a, frontier_b = [a], [b]
        # Bidirectional: growing the smaller side keeps the search to two small balls.
        for depth in range(1, max_hops + 1):
            if not frontier_a or not frontier_b:
                return None
            if len(frontier_a) > len(frontier_b):
                frontier_a, frontier_b = frontier_b, frontier_a
                seen_a, seen_b = seen_b, seen_a
            next_frontier = []
            for current in frontier_a:
                for neighbour in adjacency[current]:
                    if neighbour in seen_b:
                        return depth
                    if neighbour not in seen_a:
                        seen_a.add(neighbour)
                        next_frontier.append(neighbour)
            frontier_a = next_frontier
        return None

    def blast_radius(self, service: str) -> list[str]:
        """Every service that depends on this one, directly or transitively, sorted."""
        if service not in self._services:
            return []
        return list(
            self._ancestors.get_or_compute(service, lambda: self._sorted_ancestors(service))
        )

    def _sorted_ancestors(self, service: str) -> tuple[str, ...]:
        return tuple(sorted(nx.ancestors(self._graph, service)))

    def _reachable(self, service: str) -> frozenset[str]:
        """Everything the service depends on, transitively (cached)."""
        if service not in self._services:
            return frozenset()
        return self._descendants.get_or_compute(
            service, lambda: frozenset(nx.descendants(self._graph, service))
        )

    # -- root cause ---------------------------------------------------------------------------

    def rank_root_causes(
        self,
        affected: Sequence[str],
        first_seen: Mapping[str, datetime],
        severity: Mapping[str, str],
    ) -> list[str]:
        """Rank the affected services from most to least likely root cause.

        Key: fewest affected services it depends on (0 = nothing affected below it), then
        most affected services depending on it, then earliest first_seen, then most severe
        (P0 first), then name. Dependency is transitive through services that are not
        affected. Cost: one descendants() search per affected service on a cache miss,
        O(sum of their dependency closures); ancestors are never searched.
        """
        names = list(dict.fromkeys(affected))
        affected_set = set(names)
        below: dict[str, int] = {}
        above = dict.fromkeys(names, 0)
        for name in names:
            # A service in a cycle reaches itself; that says nothing about other services.
            downstream = (self._reachable(name) & affected_set) - {name}
            below[name] = len(downstream)
            for other in downstream:
                above[other] += 1

        def key(name: str) -> tuple[int, int, tuple[int, float], int, str]:
            return (
                below[name],
                -above[name],
                _time_key(first_seen.get(name)),
                _severity_rank(severity.get(name)),
                name,
            )

        return sorted(names, key=key)

    # -- cycles -------------------------------------------------------------------------------

    def cycles(self, limit: int = MAX_REPORTED_CYCLES) -> list[list[str]]:
        """Up to `limit` dependency cycles, one per group of mutually dependent services.

        Each cycle starts at the group's first name and lists each service once:
        ["a", "b", "c"] means a -> b -> c -> a. Groups come in name order. Cost: one
        strongly-connected-components pass, O(V + E), then a search inside each group.
        """
        if limit <= 0:
            return []
        found = self._cycles.get_or_compute(limit, lambda: self._find_cycles(limit))
        return [list(cycle) for cycle in found]

    def _find_cycles(self, limit: int) -> tuple[tuple[str, ...], ...]:
        groups = [
            component
            for component in nx.strongly_connected_components(self._graph)
            if len(component) > 1
        ]
        groups.sort(key=min)
        return tuple(self._shortest_cycle_through(min(group), group) for group in groups[:limit])

    def _shortest_cycle_through(self, start: str, group: set[str]) -> tuple[str, ...]:
        """The shortest cycle from start back to itself inside one strongly connected group."""
        succ = self._graph.succ
        parent: dict[str, str] = {}
        queue = [start]
        for current in queue:
            for nxt in sorted(succ[current]):
                if nxt == start:
                    path = [current]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return tuple(reversed(path))
                if nxt in group and nxt not in parent:
                    parent[nxt] = current
                    queue.append(nxt)
        raise AssertionError(f"no cycle through {start!r} in its strongly connected group")


# -- validation -------------------------------------------------------------------------------


class _Problems:
    """Collects every problem in a document so that one error names them all."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        """Record one problem at a field path such as services[3].name."""
        self.items.append({"field": field, "message": message})

    def raise_if_any(self, source: str | None) -> None:
        """Raise one ValidationFailed carrying every problem recorded, if there are any."""
        if self.items:
            self.fail(source)

    def fail(self, source: str | None) -> NoReturn:
        """Raise one ValidationFailed carrying every problem recorded so far."""
        count = len(self.items)
        shown = "; ".join(f"{p['field']}: {p['message']}" for p in self.items[:5])
        more = f"; and {count - 5} more" if count > 5 else ""
        where = f"{source}: " if source else ""
        noun = "problem" if count == 1 else "problems"
        errors = self.items[:MAX_REPORTED_ERRORS]
        if count > MAX_REPORTED_ERRORS:
            errors.append(
                {"field": "services", "message": f"{count - MAX_REPORTED_ERRORS} more not shown"}
            )
        raise ValidationFailed(
            f"{where}invalid service graph ({count} {noun}): {shown}{more}",
            field=self.items[0]["field"],
            errors=errors,
            error_count=count,
        )


def _validate(doc: object, *, source: str | None = None) -> list[_Service]:
    """Check a graph document and return its services; raise once, naming every problem."""
    problems = _Problems()
    if doc is None:
        problems.add("document", "the document is empty; expected a mapping with a 'services' list")
        problems.fail(source)
    if not isinstance(doc, Mapping):
        problems.add(
            "document", f"expected a mapping with a 'services' list, got {_type_name(doc)}"
        )
        problems.fail(source)
    for key in doc:
        if key != "services":
            problems.add(str(key), f"unknown top-level key {key!r}; the document holds 'services'")
    if "services" not in doc:
        problems.add("services", "required: a list of services")
        problems.fail(source)
    items = doc["services"]
    if not isinstance(items, list | tuple):
        problems.add("services", f"must be a list of services, got {_type_name(items)}")
        problems.fail(source)

    first_index: dict[str, int] = {}
    pending_refs: list[tuple[str, str, str]] = []
    services: list[_Service] = []
    for index, item in enumerate(items):
        service = _validate_service(index, item, first_index, pending_refs, problems)
        if service is not None:
            services.append(service)
    for field, name, dependency in pending_refs:
        if dependency not in first_index:
            problems.add(field, f"service {name!r} depends on unknown service {dependency!r}")
    problems.raise_if_any(source)
    return services


def _validate_service(
    index: int,
    item: object,
    first_index: dict[str, int],
    pending_refs: list[tuple[str, str, str]],
    problems: _Problems,
) -> _Service | None:
    """Check one entry of `services`; record problems and return it when it is usable."""
    where = f"services[{index}]"
    if not isinstance(item, Mapping):
        problems.add(where, f"each service must be a mapping, got {_type_name(item)}")
        return None
    ok = True
    raw_name = item.get("name")
    name: str | None = None
    if "name" not in item:
        problems.add(f"{where}.name", "required: a non-empty string")
        ok = False
    elif not isinstance(raw_name, str):
        problems.add(f"{where}.name", f"must be a string, got {_type_name(raw_name)}")
        ok = False
    elif not raw_name.strip():
        problems.add(f"{where}.name", "must not be empty")
        ok = False
    elif raw_name != raw_name.strip():
        problems.add(f"{where}.name", f"{raw_name!r} has leading or trailing whitespace")
        ok = False
    elif raw_name in first_index:
        problems.add(
            f"{where}.name",
            f"duplicate service name {raw_name!r} "
            f"(first defined at services[{first_index[raw_name]}])",
        )
        ok = False
    else:
        name = raw_name
        first_index[name] = index
    label = f"service {name!r}" if name is not None else where

    for key in item:
        if key not in SERVICE_KEYS:
            problems.add(
                f"{where}.{key}",
                f"{label} has unknown key {key!r} (allowed: {', '.join(SERVICE_KEYS)})",
            )
            ok = False

    team = item.get("team")
    if team is not None and (not isinstance(team, str) or not team.strip()):
        problems.add(f"{where}.team", f"{label}: team must be a non-empty string, got {team!r}")
        ok = False

    tier = item.get("tier")
    if tier is not None and (isinstance(tier, bool) or not isinstance(tier, str | int)):
        problems.add(f"{where}.tier", f"{label}: tier must be a string or an integer, got {tier!r}")
        ok = False
    elif isinstance(tier, str) and not tier.strip():
        problems.add(f"{where}.tier", f"{label}: tier must not be an empty string")
        ok = False

    labels: list[tuple[str, str]] = []
    raw_labels = item.get("labels")
    if raw_labels is not None and not isinstance(raw_labels, Mapping):
        problems.add(
            f"{where}.labels", f"{label}: labels must be a mapping, got {_type_name(raw_labels)}"
        )
        ok = False
    elif raw_labels is not None:
        for key, value in raw_labels.items():
            if not isinstance(key, str) or not key:
                problems.add(
                    f"{where}.labels", f"{label}: label names must be non-empty strings: {key!r}"
                )
                ok = False
            elif not isinstance(value, str):
                problems.add(
                    f"{where}.labels.{key}",
                    f"{label}: label {key!r} must be a string, got {value!r} (quote it)",
                )
                ok = False
            else:
                labels.append((key, value))

    depends_on: list[str] = []
    raw_deps = item.get("depends_on")
    if raw_deps is not None and not isinstance(raw_deps, list | tuple):
        problems.add(
            f"{where}.depends_on",
            f"{label}: depends_on must be a list of service names, got {_type_name(raw_deps)}",
        )
        ok = False
    elif raw_deps is not None:
        for position, dependency in enumerate(raw_deps):
            field = f"{where}.depends_on[{position}]"
            if not isinstance(dependency, str) or not dependency:
                problems.add(
                    field, f"{label}: dependencies must be service names, got {dependency!r}"
                )
                ok = False
            elif dependency == raw_name:
                problems.add(field, f"{label} depends on itself")
                ok = False
            elif dependency in depends_on:
                problems.add(field, f"{label} lists dependency {dependency!r} more than once")
                ok = False
            else:
                depends_on.append(dependency)
                if name is not None:
                    pending_refs.append((field, name, dependency))

    if not ok or name is None:
        return None
    return _Service(
        name=name,
        team=team,
        tier=tier,
        labels=tuple(sorted(labels)),
        depends_on=tuple(depends_on),
    )


# -- parsing helpers --------------------------------------------------------------------------


class _StrictYamlLoader(_YamlBaseLoader):
    """A safe YAML loader that rejects duplicate mapping keys instead of keeping the last."""

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
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(ValueError):
    """A JSON object names the same key twice."""


def _reject_duplicate_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def _raise_parse_error(message: str, line: int | None, column: int | None) -> NoReturn:
    entry: dict[str, Any] = {"field": "document", "message": message}
    extra: dict[str, Any] = {}
    if line is not None:
        entry["line"] = extra["line"] = line
    if column is not None:
        entry["column"] = extra["column"] = column
    raise ValidationFailed(message, field="document", errors=[entry], **extra) from None


def _digest_of(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _check_hops(hops: int, field: str) -> None:
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise ValidationFailed(f"{field} must be a non-negative integer, got {hops!r}", field=field)


def _time_key(moment: datetime | None) -> tuple[int, float]:
    # Missing times sort last; naive times are taken as UTC so they compare with aware ones.
    if moment is None:
        return (1, 0.0)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (0, moment.timestamp())


def _severity_rank(severity: str | None) -> int:
    if severity is None:
        return len(SEVERITY_ORDER)
    return SEVERITY_ORDER.get(severity.strip().upper(), len(SEVERITY_ORDER))


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
