"""Correlation rule v2: directed distances on the condensation, links, explains and roots."""

from __future__ import annotations

import itertools
import random
import time
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.correlation import rule as rule_module
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.rule import CorrelationRule, Witness, rule_for
from incidents.exceptions import ValidationFailed

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "services.yaml"


@pytest.fixture(scope="module")
def graph() -> ServiceGraph:
    return ServiceGraph.from_file(EXAMPLE)


def graph_of(deps: dict[str, list[str]]) -> ServiceGraph:
    return ServiceGraph.from_document(
        {"services": [{"name": name, "depends_on": targets} for name, targets in deps.items()]}
    )


# -- the example graph ---------------------------------------------------------------------


def test_two_providers_of_one_consumer_are_not_linked(graph: ServiceGraph) -> None:
    rule = CorrelationRule(graph, 2)
    # Both are dependencies of ai-analysis-service: nothing lies below both of them.
    assert rule.link("database-postgres", "ai-models-bedrock") is None
    # api-gateway depends on both cache-redis and (directly) user-service; cache-redis has
    # no dependencies and user-service does not reach it, so they are providers only.
    assert graph.dependencies("cache-redis") == []
    assert "cache-redis" in graph.dependencies("api-gateway")
    assert "user-service" in graph.dependencies("api-gateway")
    assert rule.link("cache-redis", "user-service") is None
    assert rule.link("user-service", "cache-redis") is None


def test_siblings_of_one_dependency_are_linked(graph: ServiceGraph) -> None:
    rule = CorrelationRule(graph, 2)
    witness = rule.link("user-service", "feedback-service")
    assert witness == Witness("database-postgres", 1, 1)
    assert witness is not None and witness.total == 2
    assert rule.link("feedback-service", "user-service") == Witness("database-postgres", 1, 1)


def test_direct_and_two_hop_dependencies_are_linked(graph: ServiceGraph) -> None:
    rule = CorrelationRule(graph, 2)
    assert rule.link("user-service", "database-postgres") == Witness("database-postgres", 1, 0)
    assert rule.link("api-gateway", "database-postgres") == Witness("database-postgres", 2, 0)
    assert rule.link("database-postgres", "api-gateway") == Witness("database-postgres", 0, 2)
    assert rule.link("api-gateway", "api-gateway") == Witness("api-gateway", 0, 0)


def test_three_hops_need_hops_three(graph: ServiceGraph) -> None:
    assert rule_for(graph, 2).link("web-frontend", "database-postgres") is None
    assert rule_for(graph, 2).distance("web-frontend", "database-postgres") is None
    assert rule_for(graph, 3).link("web-frontend", "database-postgres") == Witness(
        "database-postgres", 3, 0
    )
    assert rule_for(graph, 3).distance("web-frontend", "database-postgres") == 3


def test_linked_pairs_of_the_example_graph(graph: ServiceGraph) -> None:
    rule = CorrelationRule(graph, 2)
    pairs = [(a, b) for a, b in itertools.combinations(graph.services(), 2) if rule.link(a, b)]
    print(f"v2 links {len(pairs)} of 55 pairs at hops=2 (the undirected rule linked 29)")
    assert len(pairs) == 24
    assert ("cache-redis", "database-postgres") not in pairs
    assert ("api-gateway", "cache-redis") in pairs


def test_explains_below_above_and_roots(graph: ServiceGraph) -> None:
    rule = CorrelationRule(graph, 2)
    assert rule.explains("database-postgres", "user-service")
    assert not rule.explains("user-service", "database-postgres")
    assert rule.below("user-service") == {"user-service": 0, "database-postgres": 1}
    assert rule.above("user-service") == {
        "user-service": 0,
        "api-gateway": 1,
        "notification-service": 1,
        "web-frontend": 2,
    }
    alerting = ["web-frontend", "api-gateway", "user-service", "cache-redis"]
    assert rule.roots(alerting) == ["cache-redis", "user-service"]
    # web-frontend is three hops above the database: at hops=2 it stays a root of its own.
    assert rule.roots(["web-frontend", "database-postgres"]) == [
        "database-postgres",
        "web-frontend",
    ]
    assert rule_for(graph, 3).roots(["web-frontend", "database-postgres"]) == ["database-postgres"]


def test_unknown_services_are_isolated(graph: ServiceGraph) -> None:
    rule = CorrelationRule(graph, 2)
    assert rule.node("ghost") == "ghost"
    assert rule.distance("ghost", "ghost") == 0
    assert rule.distance("ghost", "user-service") is None
    assert rule.distance("user-service", "ghost") is None
    assert rule.below("ghost") == {"ghost": 0}
    assert rule.above("ghost") == {"ghost": 0}
    assert rule.link("ghost", "user-service") is None
    assert rule.linked_to("ghost") == {"ghost": Witness("ghost", 0, 0)}
    assert rule.roots(["ghost", "user-service", "ghost"]) == ["ghost", "user-service"]
    assert rule.partition_of("ghost") == "ghost"


def test_partitions(graph: ServiceGraph) -> None:
    assert graph.partition_of("web-frontend") == "ai-analysis-service"
    assert {graph.partition_of(name) for name in graph.services()} == {"ai-analysis-service"}
    split = graph_of({"b": ["c"], "c": [], "x": ["a"], "a": [], "lone": []})
    assert split.condensed().partition == {"b": "b", "c": "b", "a": "a", "x": "a", "lone": "lone"}
    assert CorrelationRule(split, 1).partition_of("x") == "a"
    assert split.partition_of("nope") == "nope"


def test_rule_for_is_shared_and_checks_hops(graph: ServiceGraph) -> None:
    assert rule_for(graph, 2) is rule_for(graph, 2)
    assert rule_for(ServiceGraph.from_file(EXAMPLE), 2) is rule_for(graph, 2)
    assert rule_for(graph, 3) is not rule_for(graph, 2)
    assert rule_for(graph, 2).hops == 2
    for bad in (-1, True, 1.5):
        with pytest.raises(ValidationFailed, match="hops"):
            rule_for(graph, bad)  # type: ignore[arg-type]


def test_memo_is_bounded_and_answers_stay_right(
    graph: ServiceGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rule_module, "MEMO_LIMIT", 4)
    small = CorrelationRule(graph, 2)
    reference = CorrelationRule(ServiceGraph.from_file(EXAMPLE), 2)
    for _ in range(3):
        for name in graph.services():
            assert small.above(name) == reference.above(name)
            assert small.below(name) == reference.below(name)
    assert small._up._held <= 4 and small._down._held <= 4


# -- cycles --------------------------------------------------------------------------------


def test_cycle_members_are_one_node() -> None:
    cyclic = graph_of({"a": ["b"], "b": ["a"], "c": ["a"], "d": ["b", "e"], "e": []})
    condensed = cyclic.condensed()
    assert condensed is cyclic.condensed()
    assert condensed.rep == {"a": "a", "b": "a", "c": "c", "d": "d", "e": "e"}
    assert condensed.members["a"] == ("a", "b")
    assert condensed.succ == {"a": (), "c": ("a",), "d": ("a", "e"), "e": ()}
    assert condensed.pred == {"a": ("c", "d"), "c": (), "d": (), "e": ("d",)}
    rule = CorrelationRule(cyclic, 2)
    assert rule.node("b") == "a"
    assert rule.distance("a", "b") == rule.distance("b", "a") == 0
    assert rule.distance("c", "b") == 1
    assert rule.below("c") == {"c": 0, "a": 1, "b": 1}
    assert rule.above("b") == {"b": 0, "a": 0, "c": 1, "d": 1}
    assert rule.link("a", "b") == Witness("a", 0, 0)
    assert rule.link("b", "b") == Witness("b", 0, 0)
    assert rule.link("c", "d") == Witness("a", 1, 1)
    assert rule.roots({"a", "b"}) == ["a", "b"]
    assert rule.roots({"a", "b", "c"}) == ["a", "b"]
    assert rule.roots({"c", "d"}) == ["c", "d"]


# -- a brute-force reference ---------------------------------------------------------------


class Reference:
    """The rule computed the slow way: reachability sets, then a 0-1 BFS per source."""

    def __init__(self, deps: dict[str, list[str]], hops: int) -> None:
        self.deps, self.hops, self.names = deps, hops, sorted(deps)
        self.reach = {name: self._reach(name) for name in self.names}

    def _reach(self, start: str) -> set[str]:
        seen, stack = {start}, [start]
        while stack:
            for nxt in self.deps[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def same(self, a: str, b: str) -> bool:
        return a == b or (a in self.reach.get(b, ()) and b in self.reach.get(a, ()))

    def down(self, start: str) -> dict[str, int]:
        """Every distance from start, unbounded; an edge inside a cycle costs nothing."""
        dist = {start: 0}
        queue = deque([start])
        while queue:
            current = queue.popleft()
            for nxt in self.deps.get(current, []):
                cost = dist[current] + (0 if self.same(current, nxt) else 1)
                if cost < dist.get(nxt, 1 << 30):
                    dist[nxt] = cost
                    if cost == dist[current]:
                        queue.appendleft(nxt)
                    else:
                        queue.append(nxt)
        return dist

    def d(self, s: str, c: str) -> int | None:
        found = self.down(s).get(c)
        return found if found is not None and found <= self.hops else None

    def link(self, s: str, t: str) -> Witness | None:
        if s == t:
            return Witness(s, 0, 0)
        left, right = self.down(s), self.down(t)
        options = [
            (left[c] + right[c], c) for c in left if c in right and left[c] + right[c] <= self.hops
        ]
        if not options:
            return None
        _total, via = min(options)
        return Witness(via, left[via], right[via])

    def roots(self, services: set[str]) -> list[str]:
        return sorted(
            s
            for s in services
            if not any(not self.same(s, r) and self.d(s, r) is not None for r in services)
        )


@st.composite
def small_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    size = draw(st.integers(min_value=1, max_value=8))
    names = [f"s{i}" for i in range(size)]
    pairs = st.tuples(st.sampled_from(names), st.sampled_from(names))
    edges = draw(st.sets(pairs.filter(lambda p: p[0] != p[1]), max_size=16))
    deps: dict[str, list[str]] = {name: [] for name in names}
    for source, target in sorted(edges):
        deps[source].append(target)
    return deps


@settings(max_examples=200, deadline=None)
@given(deps=small_graphs(), hops=st.integers(min_value=0, max_value=4), data=st.data())
def test_rule_matches_brute_force(
    deps: dict[str, list[str]], hops: int, data: st.DataObject
) -> None:
    rule = CorrelationRule(graph_of(deps), hops)
    ref = Reference(deps, hops)
    names = [*ref.names, "ghost"]
    for s in names:
        assert rule.below(s) == {c: d for c in names if (d := ref.d(s, c)) is not None}
        assert rule.above(s) == {t: d for t in names if (d := ref.d(t, s)) is not None}
        expected_links = {}
        for t in names:
            assert rule.distance(s, t) == ref.d(s, t)
            assert rule.explains(t, s) == (ref.d(s, t) is not None)
            witness = ref.link(s, t)
            assert rule.link(s, t) == witness
            if witness is not None:
                expected_links[t] = witness
        assert rule.linked_to(s) == expected_links
    alerting = data.draw(st.sets(st.sampled_from(names)))
    assert rule.roots(alerting) == ref.roots(alerting)


# -- a large graph -------------------------------------------------------------------------


def layered_graph(size: int, seed: int) -> dict[str, list[str]]:
    """Mostly downward edges, and a few short back edges that close small cycles."""
    rng = random.Random(seed)
    names = [f"svc-{i:05d}" for i in range(size)]
    deps: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        targets: set[str] = set()
        if i < size - 1:
            for _ in range(rng.randint(0, 3)):
                targets.add(names[rng.randint(i + 1, min(size - 1, i + 50))])
        if i > 0 and rng.random() < 0.05:
            targets.add(names[rng.randrange(max(0, i - 10), i)])
        deps[name] = sorted(targets)
    return deps


def components(deps: dict[str, list[str]]) -> dict[str, int]:
    """Strongly connected components by Kosaraju's two passes, written out iteratively."""
    order: list[str] = []
    visited: set[str] = set()
    for start in deps:
        if start in visited:
            continue
        visited.add(start)
        stack = [(start, iter(deps[start]))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                order.append(node)
            elif child not in visited:
                visited.add(child)
                stack.append((child, iter(deps[child])))
    reverse: dict[str, list[str]] = {name: [] for name in deps}
    for name, targets in deps.items():
        for target in targets:
            reverse[target].append(name)
    label: dict[str, int] = {}
    for start in reversed(order):
        if start in label:
            continue
        label[start] = len(label)
        pending = [start]
        while pending:
            for prev in reverse[pending.pop()]:
                if prev not in label:
                    label[prev] = label[start]
                    pending.append(prev)
    return label


def bounded(
    adjacency: dict[str, list[str]], comp: dict[str, int], start: str, hops: int
) -> dict[str, int]:
    dist = {start: 0}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for nxt in adjacency[current]:
            cost = dist[current] + (comp[current] != comp[nxt])
            if cost <= hops and cost < dist.get(nxt, hops + 1):
                dist[nxt] = cost
                queue.appendleft(nxt) if cost == dist[current] else queue.append(nxt)
    return dist


def test_ten_thousand_services() -> None:
    deps = layered_graph(10_000, seed=7)
    graph = graph_of(deps)
    started = time.perf_counter()
    rule = CorrelationRule(graph, 3)
    assert time.perf_counter() - started < 2
    comp = components(deps)
    # The back edges close a few small cycles, so the condensation is not the graph itself.
    assert len(set(comp.values())) < len(deps)
    reverse: dict[str, list[str]] = {name: [] for name in deps}
    for name, targets in deps.items():
        for target in targets:
            reverse[target].append(name)
    rng = random.Random(11)
    in_cycles = [name for name in deps if rule.node(name) != name]
    assert len(in_cycles) >= 10
    sample = [*in_cycles[:10], *rng.sample(sorted(deps), 30)]
    for name in sample:
        assert rule.below(name) == bounded(deps, comp, name, 3)
        assert rule.above(name) == bounded(reverse, comp, name, 3)
    for name in sample[:10]:
        # Linked: meet at some C below name, then climb from C within the remaining hops.
        expected: dict[str, int] = {}
        for via, left in bounded(deps, comp, name, 3).items():
            for other, right in bounded(reverse, comp, via, 3 - left).items():
                expected[other] = min(expected.get(other, 4), left + right)
        assert {t: w.total for t, w in rule.linked_to(name).items()} == expected
        for other, total in expected.items():
            witness = rule.link(name, other)
            assert witness is not None and witness.total == total
    assert rule.roots(sample) == sorted(
        s
        for s in sample
        if not any(comp[r] != comp[s] and r in bounded(deps, comp, s, 3) for r in sample)
    )
