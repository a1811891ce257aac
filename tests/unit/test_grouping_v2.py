"""place() on the example graph: where a new alert goes under rule v2, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from incidents.correlation.graph import ServiceGraph
from incidents.correlation.grouping import OpenIncident, Placement, place
from incidents.correlation.index import IncidentLink, MemoryIndex
from incidents.correlation.rule import CorrelationRule

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "services.yaml"
T0 = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


class World:
    """Open incidents in memory: each a list of (service, start) and its roots."""

    def __init__(self, rule: CorrelationRule) -> None:
        self.rule = rule
        self.index = MemoryIndex()
        self.members: dict[int, list[str]] = {}
        self.opened: dict[int, datetime] = {}

    def add(self, incident_id: int, *services: str, at: datetime = T0) -> None:
        for service in services:
            self.index.add_link(IncidentLink(incident_id, service, at))
            self.members.setdefault(incident_id, []).append(service)
            self.opened[incident_id] = min(self.opened.get(incident_id, at), at)

    def incident(self, incident_id: int) -> OpenIncident:
        roots = tuple(self.rule.roots(self.members[incident_id]))
        return OpenIncident(incident_id, self.opened[incident_id], roots)

    def place(self, service: str, at: datetime = T0) -> Placement:
        return place(self.rule, service, at, self.index, self.incident, WINDOW)


@pytest.fixture
def world() -> World:
    return World(CorrelationRule(ServiceGraph.from_file(EXAMPLE), 2))


def test_nothing_near_opens(world: World) -> None:
    placed = world.place("cache-redis")
    assert (placed.action, placed.target) == ("open", None)


def test_same_service_joins(world: World) -> None:
    world.add(1, "cache-redis")
    placed = world.place("cache-redis", T0 + timedelta(seconds=30))
    assert (placed.action, placed.target, placed.hops) == ("join", 1, 0)
    assert placed.reason == "another alert on cache-redis is already in this incident"


def test_a_symptom_names_the_service_and_distance_that_linked_it(world: World) -> None:
    world.add(4, "database-postgres")
    placed = world.place("user-service")
    assert (placed.action, placed.target, placed.via, placed.hops) == (
        "join",
        4,
        "database-postgres",
        1,
    )
    assert (
        placed.reason
        == "user-service depends on database-postgres (1 hop), the root of this incident"
    )
    assert placed.as_data()["possibly_related"] == []


def test_a_symptom_joins_the_nearest_explaining_service_in_a_chain(world: World) -> None:
    world.add(1, "database-postgres", "user-service", "api-gateway")
    placed = world.place("web-frontend")  # three hops from the database, one from the gateway
    assert (placed.target, placed.via, placed.hops) == (1, "api-gateway", 1)
    assert placed.reason.endswith("which is in this incident")


def test_two_providers_of_one_consumer_are_two_incidents(world: World) -> None:
    world.add(1, "database-postgres")
    placed = world.place("ai-models-bedrock")
    assert placed.action == "open"


def test_a_consumer_of_two_roots_joins_the_earliest_and_records_the_other(world: World) -> None:
    world.add(1, "database-postgres")
    world.add(2, "ai-models-bedrock", at=T0 + timedelta(seconds=5))
    placed = world.place("ai-analysis-service", T0 + timedelta(seconds=10))
    assert (placed.action, placed.target, placed.possibly_related) == ("join", 1, (2,))
    assert placed.absorbed == ()


def test_cache_and_user_service_are_not_linked(world: World) -> None:
    world.add(1, "cache-redis")
    assert world.place("user-service").action == "open"


def test_a_root_that_fires_late_reroots(world: World) -> None:
    world.add(1, "api-gateway", "user-service", at=T0 - timedelta(minutes=2))
    placed = world.place("database-postgres")
    assert (placed.action, placed.target, placed.becomes_root) == ("reroot", 1, True)
    assert placed.reason == (
        "user-service depends on database-postgres (1 hop): database-postgres is the "
        "incident's new root"
    )


def test_a_common_cause_merges_into_the_oldest(world: World) -> None:
    # notification-service (2 hops above the database) and feedback-service (1 hop) are
    # not linked (2 + 1 > 2): two incidents, until the database explains both roots.
    world.add(7, "feedback-service", at=T0 + timedelta(seconds=2))
    world.add(3, "notification-service", at=T0 + timedelta(seconds=1))
    assert world.place("notification-service", T0 + timedelta(seconds=1)).target == 3
    placed = world.place("database-postgres", T0 + timedelta(seconds=3))
    assert (placed.action, placed.target, placed.absorbed) == ("merge", 3, (7,))
    assert placed.becomes_root
    assert placed.reason == (
        "feedback-service and notification-service both depend on database-postgres: the common "
        "cause of incidents 3, 7"
    )


def test_siblings_join_through_a_silent_dependency(world: World) -> None:
    world.add(1, "user-service")
    placed = world.place("feedback-service")
    assert (placed.action, placed.target, placed.via, placed.becomes_root) == (
        "join",
        1,
        "database-postgres",
        True,
    )
    assert placed.reason == (
        "feedback-service and user-service both depend on database-postgres (1 hop and 1 hop); "
        "user-service is a root of this incident"
    )


def test_symptom_siblings_do_not_link(world: World) -> None:
    # notification-service is a symptom of user-service's incident (root database-postgres);
    # api-gateway is its sibling through user-service but lies above a root, so it joins as
    # a symptom, not through notification-service.
    world.add(1, "database-postgres", "user-service", "notification-service")
    placed = world.place("api-gateway")
    assert placed.via == "user-service"


def test_outside_the_window_opens(world: World) -> None:
    world.add(1, "database-postgres")
    assert world.place("user-service", T0 + timedelta(minutes=11)).action == "open"


def test_a_service_outside_the_graph_only_meets_itself(world: World) -> None:
    world.add(1, "billing")
    assert world.place("billing").target == 1
    assert world.place("ledger").action == "open"


def test_a_new_root_linked_to_the_roots_of_two_incidents_merges_them(world: World) -> None:
    # feedback-service and ai-analysis-service are siblings but eleven minutes apart (more
    # than the window): two incidents. user-service, between them in time, is linked to both.
    world.add(1, "feedback-service")
    world.add(2, "ai-analysis-service", at=T0 + timedelta(minutes=11))
    placed = world.place("user-service", T0 + timedelta(minutes=5))
    assert (placed.action, placed.target, placed.absorbed, placed.becomes_root) == (
        "merge",
        1,
        (2,),
        True,
    )
    assert placed.via == "database-postgres"
    assert placed.reason == (
        "user-service and feedback-service both depend on database-postgres (1 hop and "
        "1 hop); user-service is linked to the roots ai-analysis-service and feedback-service of "
        "incidents 1, 2: linked roots belong to one incident, so they merge"
    )


def test_a_cause_linked_to_another_incidents_root_merges_it_too(world: World) -> None:
    # user-service explains notification-service (incident 3) and is a sibling of the
    # roots of incident 5: it is a root where it lands, so both are one incident.
    world.add(5, "feedback-service", "ai-analysis-service", at=T0 + timedelta(seconds=5))
    world.add(3, "notification-service")
    placed = world.place("user-service", T0 + timedelta(seconds=15))
    assert (placed.action, placed.target, placed.absorbed) == ("merge", 3, (5,))
    assert placed.reason.startswith(
        "notification-service depends on user-service, and user-service and "
    )
    assert placed.reason.endswith("linked roots belong to one incident, so incidents 3, 5 merge")


def test_a_symptom_linked_to_roots_of_several_incidents_merges_nothing(world: World) -> None:
    # api-gateway is explained by user-service (incident 1) and is a sibling of nothing
    # else's root it could merge: symptoms never merge incidents.
    world.add(1, "user-service")
    world.add(2, "cache-redis", at=T0 + timedelta(seconds=1))
    placed = world.place("api-gateway", T0 + timedelta(seconds=2))
    assert (placed.action, placed.absorbed) == ("join", ())
    assert placed.possibly_related == (2,)
