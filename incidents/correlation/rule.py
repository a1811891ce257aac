"""The correlation rule (v2): which services are linked, which explain others, which are roots.

The rule, on the service graph where an edge S -> C means S depends on C:

- Distance d(S, C) is the length of the shortest directed path from S to C along
  dependency edges; d(S, S) = 0.
- Services in a dependency cycle count as one node: the distance between members of one
  cycle is 0, and distances are computed on the condensation.
- S and T are linked when some service C (S, T or any other) has d(S, C) + d(T, C) <= hops.
  With hops = 2 the same service, a direct dependency, a 2-hop dependency and siblings that
  depend directly on one service are linked; two providers of a common consumer are not.
- S explains T when d(T, S) <= hops: S lies below T.
- The roots of a set of alerting services are those S for which no other service R of the
  set (other: a different condensation node) has d(S, R) <= hops. Members of one cycle are
  roots together when nothing else of the set lies below them.

Services that are not in the graph are isolated nodes. Every search is a breadth-first
search on the condensation that stops at `hops`, so its cost follows the neighbourhood, not
the graph.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from incidents.correlation.condensed import Condensed
from incidents.correlation.graph import ServiceGraph
from incidents.exceptions import ValidationFailed

__all__ = ["CorrelationRule", "Witness", "rule_for"]

# Bounds the memo of neighbourhoods by the (node, distance) pairs it holds, so a shared
# database whose ancestors are the whole graph cannot make it grow without limit.
MEMO_LIMIT: Final = 200_000
RULES_CACHED: Final = 8


@dataclass(frozen=True, slots=True)
class Witness:
    """Why two services are linked: they meet at `via`, `left` and `right` hops below them."""

    via: str
    left: int
    right: int

    @property
    def total(self) -> int:
        """The number of hops from one service down to via and up to the other."""
        return self.left + self.right


class _Memo:
    """Neighbourhoods by condensation node, dropped all at once when they grow too large."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: dict[str, dict[str, int]] = {}
        self._held = 0
        self._lock = threading.Lock()

    def get_or_compute(self, key: str, compute: Callable[[], dict[str, int]]) -> dict[str, int]:
        """The cached neighbourhood of key, computed on a miss; callers must not change it."""
        found = self._items.get(key)
        if found is not None:
            return found
        value = compute()
        if len(value) > self._limit:
            return value
        with self._lock:
            if self._held + len(value) > self._limit:
                self._items.clear()
                self._held = 0
            if key not in self._items:
                self._items[key] = value
                self._held += len(value)
        return value


class CorrelationRule:
    """The correlation rule on one service graph with a fixed hop limit (see module doc)."""

    __slots__ = ("_condensed", "_down", "_up", "graph", "hops")

    graph: ServiceGraph
    hops: int

    def __init__(self, graph: ServiceGraph, hops: int) -> None:
        """Bind the rule to a graph and a hop limit; hops must be a non-negative integer."""
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
            message = f"hops must be a non-negative integer, got {hops!r}"
            raise ValidationFailed(message, field="hops")
        self.graph = graph
        self.hops = hops
        self._condensed: Condensed = graph.condensed()
        self._down = _Memo(MEMO_LIMIT)
        self._up = _Memo(MEMO_LIMIT)

    def __repr__(self) -> str:
        """The graph and the hop limit."""
        return f"<CorrelationRule hops={self.hops} graph={self.graph.digest[:12]}>"

    # -- nodes and distances ------------------------------------------------------------------

    def node(self, service: str) -> str:
        """The representative of the service's cycle (its least name); unknown: itself."""
        return self._condensed.node(service)

    def distance(self, s: str, c: str) -> int | None:
        """d(s, c) when it is at most hops, else None; unknown services reach only themselves."""
        return self._down_nodes(self.node(s)).get(self.node(c))

    def below(self, s: str) -> dict[str, int]:
        """Every service C with d(s, C) <= hops, s itself at 0, mapped to d(s, C)."""
        return self._expand(self._down_nodes(self.node(s)), s)

    def above(self, c: str) -> dict[str, int]:
        """Every service S with d(S, c) <= hops, c itself at 0, mapped to d(S, c)."""
        return self._expand(self._up_nodes(self.node(c)), c)

    def explains(self, s: str, t: str) -> bool:
        """True when s lies at most hops below t: d(t, s) <= hops."""
        return self.distance(t, s) is not None

    # -- links --------------------------------------------------------------------------------

    def link(self, s: str, t: str) -> Witness | None:
        """The witness with the least total (ties: least via name), or None when not linked."""
        if s == t:
            return Witness(s, 0, 0)
        left = self._down_nodes(self.node(s))
        right = self._down_nodes(self.node(t))
        if len(right) < len(left):
            best = _meet(right, left, self.hops)
            return None if best is None else Witness(best.via, best.right, best.left)
        return _meet(left, right, self.hops)

    def linked_to(self, s: str) -> dict[str, Witness]:
        """Every service T linked to s with its witness; s itself with Witness(s, 0, 0)."""
        best: dict[str, tuple[int, str, int]] = {}
        for via, left in self._down_nodes(self.node(s)).items():
            for other, right in self._up_nodes(via).items():
                if left + right > self.hops:
                    continue
                key = (left + right, via, left)
                if other not in best or key < best[other]:
                    best[other] = key
        linked: dict[str, Witness] = {}
        for other, (total, via, left) in best.items():
            witness = Witness(via, left, total - left)
            for member in self._members(other):
                linked[member] = witness
        linked[s] = Witness(s, 0, 0)
        return linked

    # -- sets of services ---------------------------------------------------------------------

    def roots(self, services: Iterable[str]) -> list[str]:
        """The services of the set with no other node of the set at most hops below, sorted."""
        names = set(services)
        nodes = {self.node(name) for name in names}
        found = []
        for name in names:
            own = self.node(name)
            below = self._down_nodes(own)
            # Iterate over the smaller side: a storm can bring thousands of alerting services.
            if len(below) <= len(nodes):
                blocked = any(n != own and n in nodes for n in below)
            else:
                blocked = any(n != own and n in below for n in nodes)
            if not blocked:
                found.append(name)
        return sorted(found)

    def partition_of(self, service: str) -> str:
        """The id of the service's weakly connected component; unknown: the service itself."""
        return self.graph.partition_of(service)

    # -- internals ----------------------------------------------------------------------------

    def _members(self, node: str) -> tuple[str, ...]:
        return self._condensed.members.get(node, (node,))

    def _expand(self, nodes: dict[str, int], own: str) -> dict[str, int]:
        found = {own: 0}
        for node, depth in nodes.items():
            for member in self._members(node):
                found.setdefault(member, depth)
        return found

    def _down_nodes(self, node: str) -> dict[str, int]:
        return self._down.get_or_compute(node, lambda: self._search(node, self._condensed.succ))

    def _up_nodes(self, node: str) -> dict[str, int]:
        return self._up.get_or_compute(node, lambda: self._search(node, self._condensed.pred))

    def _search(self, start: str, adjacency: dict[str, tuple[str, ...]]) -> dict[str, int]:
        found = {start: 0}
        frontier = [start]
        # Level by level, so the search stops at hops however large the graph is.
        for depth in range(1, self.hops + 1):
            next_frontier = []
            for current in frontier:
                for neighbour in adjacency.get(current, ()):
                    if neighbour not in found:
                        found[neighbour] = depth
                        next_frontier.append(neighbour)
            if not next_frontier:
                break
            frontier = next_frontier
        return found


def _meet(left: dict[str, int], right: dict[str, int], hops: int) -> Witness | None:
    """The best meeting node of two downward neighbourhoods; left is the smaller one."""
    best: tuple[int, str, int] | None = None
    for via, depth in left.items():
        other = right.get(via)
        # Each depth is within hops on its own; only a sum within hops is a link.
        if other is None or depth + other > hops:
            continue
        key = (depth + other, via, depth)
        if best is None or key < best:
            best = key
    return None if best is None else Witness(best[1], best[2], best[0] - best[2])


# typed: hops=True must not share the entry of hops=1, it must be refused.
@functools.lru_cache(maxsize=RULES_CACHED, typed=True)
def rule_for(graph: ServiceGraph, hops: int) -> CorrelationRule:
    """The shared rule for this graph and hop limit; graphs hash by digest, so equal ones share."""
    return CorrelationRule(graph, hops)
