"""ServiceGraph: loading and validation, neighbourhoods, root-cause ranking, blast radius."""

from __future__ import annotations

import json
import pickle
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.correlation.graph import ServiceGraph
from incidents.exceptions import NotFound, ValidationFailed

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "services.yaml"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def graph() -> ServiceGraph:
    return ServiceGraph.from_file(EXAMPLE)


def doc_of(*services: dict[str, Any]) -> dict[str, Any]:
    return {"services": list(services)}


def fails(doc: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        ServiceGraph.from_document(doc)
    return info.value


def fields(error: ValidationFailed) -> list[str]:
    return [entry["field"] for entry in error.extra["errors"]]


# -- the example graph ---------------------------------------------------------------------


def test_example_graph_loads_with_all_services(graph: ServiceGraph) -> None:
    assert graph.services() == sorted(
        [
            "web-frontend",
            "api-gateway",
            "user-service",
            "document-processor",
            "ai-analysis-service",
            "feedback-service",
            "notification-service",
            "database-postgres",
            "cache-redis",
            "storage-s3",
            "ai-models-bedrock",
        ]
    )
    assert len(graph) == 11
    assert "api-gateway" in graph
    assert "no-such-service" not in graph
    assert graph.cycles() == []


def test_dependencies_and_dependents(graph: ServiceGraph) -> None:
    assert graph.dependencies("api-gateway") == [
        "cache-redis",
        "document-processor",
        "user-service",
    ]
    assert graph.dependencies("database-postgres") == []
    assert graph.dependents("database-postgres") == [
        "ai-analysis-service",
        "feedback-service",
        "user-service",
    ]
    assert graph.dependents("web-frontend") == []
    assert graph.dependencies("unknown") == []
    assert graph.dependents("unknown") == []


def test_node_attributes(graph: ServiceGraph) -> None:
    node = graph.node("database-postgres")
    assert node["team"] == "data-platform"
    assert node["tier"] == "1"
    assert node["labels"] == {"kind": "database", "engine": "postgresql"}
    node["labels"]["kind"] = "changed"
    assert graph.node("database-postgres")["labels"]["kind"] == "database"
    with pytest.raises(NotFound, match="nope"):
        graph.node("nope")


# -- root cause ranking --------------------------------------------------------------------


# -- blast radius --------------------------------------------------------------------------


def test_blast_radius_of_the_database(graph: ServiceGraph) -> None:
    radius = graph.blast_radius("database-postgres")
    assert radius == sorted(
        [
            "web-frontend",
            "api-gateway",
            "user-service",
            "ai-analysis-service",
            "document-processor",
            "feedback-service",
            "notification-service",
        ]
    )
    assert "storage-s3" not in radius
    assert "cache-redis" not in radius
    assert "database-postgres" not in radius
    radius.append("mutated")
    assert "mutated" not in graph.blast_radius("database-postgres")
    assert graph.blast_radius("web-frontend") == []
    assert graph.blast_radius("unknown") == []


def test_graph_is_immutable_and_pickles(graph: ServiceGraph) -> None:
    copied = pickle.loads(pickle.dumps(graph))
    assert copied == graph
    assert copied.blast_radius("cache-redis") == ["api-gateway", "web-frontend"]
    with pytest.raises(AttributeError):
        graph._graph = None
    with pytest.raises(AttributeError):
        graph.foo = 1


def test_yaml_and_json_give_the_same_graph(graph: ServiceGraph) -> None:
    assert ServiceGraph.from_json(json.dumps(graph.to_document())) == graph


# -- cycles --------------------------------------------------------------------------------


def test_cycles_are_allowed_and_reported() -> None:
    graph = ServiceGraph.from_document(
        doc_of(
            {"name": "c", "depends_on": ["a"]},
            {"name": "a", "depends_on": ["b"]},
            {"name": "b", "depends_on": ["c", "d"]},
            {"name": "d"},
            {"name": "x", "depends_on": ["y"]},
            {"name": "y", "depends_on": ["x"]},
        )
    )
    assert graph.cycles() == [["a", "b", "c"], ["x", "y"]]
    assert graph.cycles(limit=1) == [["a", "b", "c"]]
    assert graph.blast_radius("a") == ["b", "c"]
    assert graph.dependents("d") == ["b"]
    # The condensation makes the cycle one node.
    condensed = graph.condensed()
    assert condensed.node("b") == condensed.node("c") == "a"
    assert condensed.node("x") == "x" != condensed.node("d")


def test_cycles_report_one_shortest_cycle_per_group() -> None:
    graph = ServiceGraph.from_document(
        doc_of(
            {"name": "a", "depends_on": ["b", "e"]},
            {"name": "b", "depends_on": ["c"]},
            {"name": "c", "depends_on": ["d"]},
            {"name": "d", "depends_on": ["a"]},
            {"name": "e", "depends_on": ["a"]},
        )
    )
    assert graph.cycles() == [["a", "e"]]


# -- identity and round trip ---------------------------------------------------------------


def test_to_document_round_trips(graph: ServiceGraph) -> None:
    doc = graph.to_document()
    names = [service["name"] for service in doc["services"]]
    assert names == sorted(names)
    api = next(s for s in doc["services"] if s["name"] == "api-gateway")
    assert api == {
        "name": "api-gateway",
        "team": "platform",
        "tier": "1",
        "depends_on": ["cache-redis", "document-processor", "user-service"],
        "labels": {"kind": "gateway", "runtime": "kubernetes"},
    }
    again = ServiceGraph.from_document(doc)
    assert again == graph
    assert again.to_document() == doc
    assert again.digest == graph.digest == graph.version


def test_digest_is_stable_across_key_and_list_order() -> None:
    one = doc_of(
        {"name": "a", "team": "t", "tier": 1, "depends_on": ["b", "c"], "labels": {"x": "1"}},
        {"name": "b"},
        {"name": "c", "labels": {"y": "2", "x": "3"}},
    )
    two = doc_of(
        {"labels": {"x": "3", "y": "2"}, "name": "c"},
        {"depends_on": ["c", "b"], "labels": {"x": "1"}, "tier": 1, "team": "t", "name": "a"},
        {"name": "b", "depends_on": [], "labels": {}},
    )
    digest = ServiceGraph.from_document(one).digest
    assert len(digest) == 64
    assert ServiceGraph.from_document(two).digest == digest
    changed = doc_of(*one["services"][:2], {"name": "c", "labels": {"y": "2"}})
    assert ServiceGraph.from_document(changed).digest != digest


def test_empty_graph() -> None:
    empty = ServiceGraph.empty()
    assert len(empty) == 0
    assert empty.services() == []
    assert empty.to_document() == {"services": []}
    assert ServiceGraph.from_document({"services": []}) == empty
    assert empty.partition_of("a") == "a"
    assert empty.cycles() == []


# -- a large graph -------------------------------------------------------------------------


def random_document(size: int, seed: int) -> dict[str, Any]:
    """A mostly layered graph: each service depends on a few later ones, rarely on an earlier."""
    rng = random.Random(seed)
    names = [f"svc-{i:05d}" for i in range(size)]
    services = []
    for i, name in enumerate(names):
        deps: set[str] = set()
        if i < size - 1:
            for _ in range(rng.randint(0, 4)):
                deps.add(names[rng.randint(i + 1, min(size - 1, i + 200))])
        if i > 0 and rng.random() < 0.001:
            deps.add(names[rng.randrange(i)])
        services.append(
            {"name": name, "team": f"team-{i % 40}", "tier": i % 3, "depends_on": sorted(deps)}
        )
    return {"services": services}


def test_ten_thousand_services_load_and_answer_neighbourhoods() -> None:
    doc = random_document(10_000, seed=20260101)
    started = time.perf_counter()
    graph = ServiceGraph.from_document(doc)
    assert time.perf_counter() - started < 10
    assert len(graph) == 10_000
    rng = random.Random(5)
    for name in rng.sample(graph.services(), 25):
        assert name not in graph.blast_radius(name)
    assert all(len(cycle) >= 2 for cycle in graph.cycles())
    assert len(graph.cycles()) <= 20


# -- properties on random small graphs -----------------------------------------------------


@st.composite
def small_documents(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.integers(min_value=1, max_value=9))
    names = [f"s{i}" for i in range(size)]
    pairs = st.tuples(st.sampled_from(names), st.sampled_from(names))
    edges = draw(st.sets(pairs.filter(lambda p: p[0] != p[1]), max_size=20))
    deps: dict[str, list[str]] = {name: [] for name in names}
    for source, target in edges:
        deps[source].append(target)
    return {"services": [{"name": name, "depends_on": deps[name]} for name in names]}


def _descendants(graph: ServiceGraph, start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for dep in graph.dependencies(stack.pop()):
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    seen.discard(start)
    return seen


@settings(max_examples=100, deadline=None)
@given(doc=small_documents())
def test_round_trip_and_blast_radius_property(doc: dict[str, Any]) -> None:
    graph = ServiceGraph.from_document(doc)
    assert ServiceGraph.from_document(graph.to_document()) == graph
    for name in graph.services():
        radius = graph.blast_radius(name)
        assert name not in radius
        assert radius == sorted(b for b in graph.services() if name in _descendants(graph, b))
