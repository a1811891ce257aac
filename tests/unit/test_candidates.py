"""Root-cause candidates: silent common dependencies, then roots, then the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from incidents.correlation.candidates import Candidate, ServiceSeen, rank_candidates
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.rule import CorrelationRule, rule_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "services.yaml"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rule() -> CorrelationRule:
    return rule_for(ServiceGraph.from_file(EXAMPLE), 2)


def at(seconds: int, worst: str = "P2") -> ServiceSeen:
    return ServiceSeen(T0 + timedelta(seconds=seconds), worst)


def names(candidates: list[Candidate]) -> list[str]:
    return [candidate.service for candidate in candidates]


def test_silent_database_comes_first(rule: CorrelationRule) -> None:
    seen = {
        "ai-analysis-service": at(20, "P0"),
        "user-service": at(0, "P1"),
        "feedback-service": at(10, "P3"),
    }
    ranked = rank_candidates(rule, seen)
    first = ranked[0]
    assert first.service == "database-postgres"
    assert first.inferred
    assert first.reason == (
        "database-postgres (no alert; user-service, feedback-service and ai-analysis-service"
        " all depend on it)"
    )
    assert first.explains == ("user-service", "feedback-service", "ai-analysis-service")
    assert first.as_data() == {
        "service": "database-postgres",
        "inferred": True,
        "reason": first.reason,
        "explains": ["user-service", "feedback-service", "ai-analysis-service"],
    }
    # Then the three roots by earliest alert; nothing else is silent below two of them.
    assert names(ranked) == [
        "database-postgres",
        "user-service",
        "feedback-service",
        "ai-analysis-service",
    ]
    assert not any(candidate.inferred for candidate in ranked[1:])


def test_two_roots_both_depend_and_two_hops_are_said(rule: CorrelationRule) -> None:
    pair = {"feedback-service": at(5), "user-service": at(0)}
    assert rank_candidates(rule, pair)[0].reason == (
        "database-postgres (no alert; user-service and feedback-service both depend on it)"
    )
    farther = {"notification-service": at(0), "feedback-service": at(5)}
    top = rank_candidates(rule, farther)[0]
    assert top.service == "database-postgres" and top.inferred
    assert top.reason == (
        "database-postgres (no alert; notification-service and feedback-service both depend"
        " on it within 2 hops)"
    )
    # user-service lies below notification-service only, so it is not a common dependency.
    assert "user-service" not in names(rank_candidates(rule, farther))


def test_one_root_is_first_and_explains_the_rest(rule: CorrelationRule) -> None:
    seen = {
        "web-frontend": at(0, "P0"),
        "api-gateway": at(5, "P1"),
        "user-service": at(30, "P3"),
    }
    ranked = rank_candidates(rule, seen)
    assert names(ranked) == ["user-service", "web-frontend", "api-gateway"]
    root = ranked[0]
    assert not root.inferred
    assert root.reason == (
        "root: nothing else alerting lies below it; explains web-frontend and api-gateway"
    )
    assert root.explains == ("web-frontend", "api-gateway")
    assert ranked[1].reason == (
        "not a root: depends on alerting api-gateway and user-service within 2 hops"
    )
    assert ranked[2].reason == "not a root: depends on alerting user-service"
    assert ranked[2].explains == ("web-frontend",)


def test_unrelated_roots_rank_by_earliest_then_severity(rule: CorrelationRule) -> None:
    earlier = {"storage-s3": at(30, "P0"), "notification-service": at(0, "P3")}
    ranked = rank_candidates(rule, earlier)
    assert names(ranked) == ["notification-service", "storage-s3"]
    assert not any(candidate.inferred for candidate in ranked)
    same_time = {"storage-s3": at(0, "P1"), "notification-service": at(0, "P2")}
    assert names(rank_candidates(rule, same_time)) == ["storage-s3", "notification-service"]


def test_ties_break_by_name(rule: CorrelationRule) -> None:
    seen = {"storage-s3": at(0), "cache-redis": at(0), "notification-service": at(0)}
    assert names(rank_candidates(rule, seen)) == [
        "cache-redis",
        "notification-service",
        "storage-s3",
    ]


def test_naive_times_count_as_utc(rule: CorrelationRule) -> None:
    seen = {
        "storage-s3": ServiceSeen(datetime(2026, 1, 1, 11, 0), "P3"),
        "cache-redis": at(0, "P0"),
    }
    assert names(rank_candidates(rule, seen)) == ["storage-s3", "cache-redis"]


def test_silent_candidates_rank_by_roots_explained_then_name() -> None:
    graph = ServiceGraph.from_document(
        {
            "services": [
                {"name": "a", "depends_on": ["x", "y"]},
                {"name": "b", "depends_on": ["x", "y"]},
                {"name": "c", "depends_on": ["x"]},
                {"name": "d", "depends_on": ["w", "z"]},
                {"name": "e", "depends_on": ["w", "z"]},
                {"name": "w"},
                {"name": "x"},
                {"name": "y"},
                {"name": "z"},
            ]
        }
    )
    seen = {name: at(i) for i, name in enumerate("edcba")}
    ranked = rank_candidates(CorrelationRule(graph, 1), seen)
    assert names(ranked) == ["x", "w", "y", "z", "e", "d", "c", "b", "a"]
    assert [candidate.inferred for candidate in ranked] == [True] * 4 + [False] * 5
    assert ranked[0].reason == "x (no alert; c, b and a all depend on it)"
    assert ranked[1].explains == ("e", "d")


def test_the_list_is_capped(rule: CorrelationRule) -> None:
    seen = {name: at(i) for i, name in enumerate(rule.graph.services())}
    assert len(rank_candidates(rule, seen)) == 11
    assert len(rank_candidates(rule, seen, limit=3)) == 3
    assert rank_candidates(rule, seen, limit=0) == []
    assert rank_candidates(rule, {}) == []
    storm = {f"ghost-{i:03d}": at(i) for i in range(50)}
    ranked = rank_candidates(rule, storm)
    assert names(ranked) == [f"ghost-{i:03d}" for i in range(20)]


def test_long_lists_are_shortened_in_the_reason() -> None:
    services = [{"name": "db"}] + [{"name": f"s{i}", "depends_on": ["db"]} for i in range(8)]
    rule = CorrelationRule(ServiceGraph.from_document({"services": services}), 2)
    seen = {f"s{i}": at(i) for i in range(8)}
    top = rank_candidates(rule, seen)[0]
    assert top.reason == "db (no alert; s0, s1, s2, s3, s4 and 3 more all depend on it)"
    assert top.explains == tuple(f"s{i}" for i in range(8))
