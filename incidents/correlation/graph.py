"""The service dependency graph: an immutable, validated graph where A -> B means A depends on B.

This is the only module that imports networkx. The graph document, as JSON or YAML, is
`{"services": [{"name", "team", "tier", "depends_on", "labels"}, ...]}`; `to_document()`
returns the same shape in canonical order, and `digest` is the sha256 of that canonical form.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NoReturn

import networkx as nx

from incidents.correlation.condensed import Condensed, build_condensed
from incidents.correlation.graph_document import SERVICE_KEYS, ServiceSpec, validate_graph
from incidents.correlation.lru import LRU
from incidents.documents import Document, load_file, load_json, load_yaml
from incidents.exceptions import NotFound

__all__ = ["SERVICE_KEYS", "Condensed", "ServiceGraph"]

MAX_REPORTED_CYCLES: Final = 20
# Bounds memory: a cached ancestor set of a shared database can hold every service.
CACHE_SIZE: Final = 1024


class ServiceGraph:
    """An immutable service dependency graph; an edge A -> B means A depends on B."""

    __slots__ = (
        "_ancestors",
        "_condensed",
        "_cycles",
        "_digest",
        "_graph",
        "_names",
        "_services",
    )

    _graph: Any
    _services: dict[str, ServiceSpec]
    _names: tuple[str, ...]
    _digest: str
    _ancestors: LRU[str, tuple[str, ...]]
    _cycles: LRU[int, tuple[tuple[str, ...], ...]]
    _condensed: LRU[int, Condensed]

    def __init__(self, services: Iterable[ServiceSpec]) -> None:
        """Build from already validated services; use from_document() or empty() instead."""
        by_name = {service.name: service for service in services}
        graph = nx.DiGraph()
        graph.add_nodes_from(by_name)
        graph.add_edges_from((s.name, dep) for s in by_name.values() for dep in s.depends_on)
        nx.freeze(graph)
        names = tuple(sorted(by_name))
        init = object.__setattr__
        init(self, "_graph", graph)
        init(self, "_services", by_name)
        init(self, "_names", names)
        init(self, "_ancestors", LRU[str, tuple[str, ...]](CACHE_SIZE))
        init(self, "_cycles", LRU[int, tuple[tuple[str, ...], ...]](8))
        init(self, "_condensed", LRU[int, Condensed](1))
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
        return cls(validate_graph(doc))

    @classmethod
    def from_parsed(cls, document: Document) -> ServiceGraph:
        """Validate a parsed document; problems name the source and, for YAML, the line."""
        return cls(validate_graph(document.data, document))

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "YAML") -> ServiceGraph:
        """Parse and validate a YAML graph document; syntax errors name the line and column."""
        return cls.from_parsed(load_yaml(text, source=source))

    @classmethod
    def from_json(cls, text: str, *, source: str = "JSON") -> ServiceGraph:
        """Parse and validate a JSON graph document; syntax errors name the line and column."""
        return cls.from_parsed(load_json(text, source=source))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ServiceGraph:
        """Load a graph file: JSON when it ends in .json, YAML otherwise; errors name file:line."""
        return cls.from_parsed(load_file(os.fspath(path)))

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
        services = [self._services[name].to_entry() for name in self._names]
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

    def blast_radius(self, service: str) -> list[str]:
        """Every service that depends on this one, directly or transitively, sorted."""
        if service not in self._services:
            return []
        return list(
            self._ancestors.get_or_compute(service, lambda: self._sorted_ancestors(service))
        )

    def _sorted_ancestors(self, service: str) -> tuple[str, ...]:
        return tuple(sorted(nx.ancestors(self._graph, service)))

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

    # -- condensation -------------------------------------------------------------------------

    def condensed(self) -> Condensed:
        """Cycles collapsed to single nodes, plus weak components; computed once, O(V + E)."""
        return self._condensed.get_or_compute(0, self._condense)

    def _condense(self) -> Condensed:
        graph = self._graph
        return build_condensed(
            nx.strongly_connected_components(graph),
            graph.edges,
            nx.weakly_connected_components(graph),
        )

    def partition_of(self, name: str) -> str:
        """The least service name of name's weakly connected component; unknown: name itself."""
        return self.condensed().partition.get(name, name)


def _digest_of(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
