"""The condensation of a service graph as plain Python data: cycles collapsed to one node.

ServiceGraph builds it from networkx's component passes (graph.py stays the only module
that imports networkx); everything here works on names and tuples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Condensed", "build_condensed"]


@dataclass(frozen=True, slots=True)
class Condensed:
    """Strongly connected components as nodes, their dependency edges, and weak components.

    Each component is named by its representative, the least member name, so the names are
    stable for equal graphs. `succ` maps a representative to the representatives it depends
    on, `pred` the reverse; both are sorted and never hold the node itself. `partition` maps
    each service to the least service name of its weakly connected component.
    """

    rep: dict[str, str]
    members: dict[str, tuple[str, ...]]
    succ: dict[str, tuple[str, ...]]
    pred: dict[str, tuple[str, ...]]
    partition: dict[str, str]

    def node(self, service: str) -> str:
        """The representative of the service's component; an unknown service is its own."""
        return self.rep.get(service, service)


def build_condensed(
    strong: Iterable[Iterable[str]],
    edges: Iterable[tuple[str, str]],
    weak: Iterable[Iterable[str]],
) -> Condensed:
    """Condense a graph given its strong components, its edges and its weak components."""
    rep: dict[str, str] = {}
    members: dict[str, tuple[str, ...]] = {}
    for component in strong:
        names = tuple(sorted(component))
        members[names[0]] = names
        for name in names:
            rep[name] = names[0]
    succ_sets: dict[str, set[str]] = {node: set() for node in members}
    pred_sets: dict[str, set[str]] = {node: set() for node in members}
    for source, target in edges:
        a, b = rep[source], rep[target]
        # Edges inside a cycle vanish: members of one component are one node.
        if a != b:
            succ_sets[a].add(b)
            pred_sets[b].add(a)
    partition: dict[str, str] = {}
    for group in weak:
        listed = list(group)
        label = min(listed)
        for name in listed:
            partition[name] = label
    return Condensed(
        rep=rep,
        members=members,
        succ={node: tuple(sorted(deps)) for node, deps in succ_sets.items()},
        pred={node: tuple(sorted(users)) for node, users in pred_sets.items()},
        partition=partition,
    )
