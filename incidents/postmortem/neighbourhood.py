"""The part of the dependency graph a postmortem draws: the incident's services, its
root-cause candidates, its blast radius and the direct dependencies of what alerted.

Layers follow dependency depth inside the picture: a service that depends on nothing
drawn is layer 0 (at the bottom), and each dependent sits above its deepest dependency.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from incidents.correlation.graph import ServiceGraph
from incidents.postmortem.model import GraphEdge, GraphNode, Neighbourhood

# A shared database's blast radius can be thousands of services; a picture that size
# helps nobody, so the rest is counted and named in the text instead.
MAX_NODES: Final = 40


def neighbourhood(
    graph: ServiceGraph,
    *,
    affected: Iterable[str],
    candidates: Iterable[str],
    blast_radius: Iterable[str],
    roots: Iterable[str] = (),
    limit: int = MAX_NODES,
) -> Neighbourhood:
    """The services around an incident with their roles, edges and layers.

    Candidates after the first are drawn as candidates only when they could be a cause:
    a root of the incident, or a silent (inferred) dependency; alerting services that lie
    above an alerting root are simply affected.
    """
    alerting = set(affected)
    ranked = list(dict.fromkeys(candidates))
    rooted = set(roots)
    causes = [s for n, s in enumerate(ranked) if n == 0 or s in rooted or s not in alerting]
    blast = set(blast_radius)
    context = sorted({d for s in alerting for d in graph.dependencies(s)} - alerting - blast)
    wanted = list(dict.fromkeys([*ranked, *sorted(alerting), *sorted(blast - alerting), *context]))
    drawn = wanted[:limit]
    chosen = set(drawn)
    edges = [
        GraphEdge(source=s, target=d) for s in drawn for d in graph.dependencies(s) if d in chosen
    ]
    depth = _depths(drawn, edges)
    nodes = [
        GraphNode(
            service=s,
            team=graph.node(s)["team"] if s in graph else None,
            role=_role(s, causes, alerting, blast),
            alerting=s in alerting,
            in_blast_radius=s in blast,
            depth=depth[s],
        )
        for s in drawn
    ]
    return Neighbourhood(nodes=tuple(nodes), edges=tuple(edges), left_out=len(wanted) - len(drawn))


def _role(service: str, ranked: list[str], alerting: set[str], blast: set[str]) -> str:
    if ranked and service == ranked[0]:
        return "root_cause"
    if service in ranked:
        return "candidate"
    if service in alerting:
        return "affected"
    if service in blast:
        return "blast_radius"
    return "context"


def _depths(services: list[str], edges: list[GraphEdge]) -> dict[str, int]:
    """Longest path down to a service with no drawn dependency; a cycle counts once."""
    below: dict[str, list[str]] = {s: [] for s in services}
    for edge in edges:
        below[edge.source].append(edge.target)
    depth: dict[str, int] = {}

    def visit(service: str, path: set[str]) -> int:
        if service in depth:
            return depth[service]
        path.add(service)
        deps = [visit(d, path) for d in below[service] if d not in path]
        path.discard(service)
        depth[service] = 1 + max(deps) if deps else 0
        return depth[service]

    for service in services:
        visit(service, set())
    return depth
