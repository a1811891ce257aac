"""correlate() on its own, and the incident stage's grouping under every ingestion order."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from incidents.correlation.engine import IncidentLink, MemoryIndex, OpenIncident, correlate

from incidents.config import Settings
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import save_graph
from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.ingest.fingerprint import label_fingerprint
from incidents.migrate import upgrade
from incidents.models import PipelineJob
from incidents.pipeline.runner import run_job
from tests.factories import stored_alert

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "services.yaml"
T0 = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


@pytest.fixture(scope="module")
def graph() -> ServiceGraph:
    return ServiceGraph.from_file(EXAMPLE)


def index_of(*incidents: OpenIncident) -> MemoryIndex:
    index = MemoryIndex()
    for incident in incidents:
        index.add(incident)
    return index


def open_incident(
    incident_id: int, *services: str, first: datetime = T0, last: datetime | None = None
) -> OpenIncident:
    return OpenIncident(incident_id, set(services), first, last or first)


def matched(
    service: str, at: datetime, graph: ServiceGraph, index: MemoryIndex, hops: int = 2
) -> list[int]:
    decision = correlate(service, at, graph, index, hops=hops, window=WINDOW)
    return [m.incident.id for m in decision.matches]


def test_same_service_joins_with_zero_hops(graph: ServiceGraph) -> None:
    index = index_of(open_incident(1, "cache-redis"))
    decision = correlate(
        "cache-redis", T0 + timedelta(seconds=30), graph, index, hops=2, window=WINDOW
    )
    assert not decision.opens_incident
    [match] = decision.matches
    assert (match.incident.id, match.hops, match.via, match.gap_seconds) == (
        1,
        0,
        "cache-redis",
        30.0,
    )
    because = match.explanation("cache-redis")
    assert because["hops"] == 0
    assert because["reason"] == "same service as the incident (cache-redis)"


def test_two_hops_joins_and_names_the_nearest_service(graph: ServiceGraph) -> None:
    # api-gateway -> user-service -> database-postgres
    index = index_of(open_incident(4, "database-postgres"))
    [match] = correlate("api-gateway", T0, graph, index, hops=2, window=WINDOW).matches
    assert (match.hops, match.via) == (2, "database-postgres")
    assert "2 hop(s) from database-postgres" in match.explanation("api-gateway")["reason"]
    # With user-service in the incident too, the nearer one is named.
    index = index_of(open_incident(4, "database-postgres", "user-service"))
    [match] = correlate("api-gateway", T0, graph, index, hops=2, window=WINDOW).matches
    assert (match.hops, match.via) == (1, "user-service")


def test_edges_count_in_either_direction(graph: ServiceGraph) -> None:
    # web-frontend depends on api-gateway; the gateway is a dependency, not a dependent.
    assert matched("api-gateway", T0, graph, index_of(open_incident(1, "web-frontend"))) == [1]
    assert matched("web-frontend", T0, graph, index_of(open_incident(1, "api-gateway"))) == [1]
    # Two dependents of the same database are two hops apart through it.
    assert matched("feedback-service", T0, graph, index_of(open_incident(1, "user-service"))) == [1]


def test_three_hops_does_not_join(graph: ServiceGraph) -> None:
    # feedback-service -> database-postgres <- user-service <- api-gateway
    assert graph.distance("feedback-service", "api-gateway", 5) == 3
    index = index_of(open_incident(1, "api-gateway"))
    assert correlate("feedback-service", T0, graph, index, hops=2, window=WINDOW).opens_incident
    assert matched("feedback-service", T0, graph, index, hops=3) == [1]


def test_hops_zero_only_joins_the_same_service(graph: ServiceGraph) -> None:
    index = index_of(open_incident(1, "user-service"), open_incident(2, "database-postgres"))
    assert matched("database-postgres", T0, graph, index, hops=0) == [2]


def test_time_window_is_measured_from_the_nearby_alerts(graph: ServiceGraph) -> None:
    # The incident has database-postgres alerts at T0 and T0+5 min.
    incident = open_incident(1, "database-postgres", last=T0 + timedelta(minutes=5))
    index = index_of(incident)
    near = "user-service"
    assert matched(near, T0 + timedelta(minutes=15), graph, index) == [1]  # last + window
    assert matched(near, T0 + timedelta(minutes=15, seconds=1), graph, index) == []
    assert matched(near, T0 - timedelta(minutes=10), graph, index) == [1]  # first - window
    assert matched(near, T0 - timedelta(minutes=10, seconds=1), graph, index) == []
    assert matched(near, T0 + timedelta(minutes=45), graph, index) == []
    [inside] = correlate(
        near, T0 + timedelta(minutes=2), graph, index, hops=2, window=WINDOW
    ).matches
    assert inside.gap_seconds == 120.0  # to the nearest alert in time
    [before] = correlate(
        near, T0 - timedelta(minutes=3), graph, index, hops=2, window=WINDOW
    ).matches
    assert before.gap_seconds == 180.0


def test_time_is_checked_against_alerts_on_nearby_services_only(graph: ServiceGraph) -> None:
    index = MemoryIndex()
    # One incident: storage-s3 at T0 and (far away in the graph) notification-service later.
    index.add_link(IncidentLink(1, "storage-s3", T0))
    index.add_link(IncidentLink(1, "notification-service", T0 + timedelta(minutes=9)))
    # database-postgres is 2 hops from notification-service, 3+ from storage-s3.
    late = T0 + timedelta(minutes=18)
    assert matched("database-postgres", late, graph, index) == [1]
    # document-processor is next to storage-s3 but 18 min after it: not related.
    assert matched("document-processor", late, graph, index) == []


def test_an_alert_near_two_incidents_matches_both_sorted_by_id(graph: ServiceGraph) -> None:
    # user-service is one hop from database-postgres and two from cache-redis.
    index = index_of(open_incident(9, "database-postgres"), open_incident(3, "cache-redis"))
    decision = correlate("user-service", T0, graph, index, hops=2, window=WINDOW)
    assert [m.incident.id for m in decision.matches] == [3, 9]
    assert [(m.hops, m.via) for m in decision.matches] == [
        (2, "cache-redis"),
        (1, "database-postgres"),
    ]


def test_a_service_outside_the_graph_only_meets_itself(graph: ServiceGraph) -> None:
    index = index_of(open_incident(1, "billing"), open_incident(2, "api-gateway"))
    assert matched("billing", T0, graph, index) == [1]
    assert correlate("ledger", T0, graph, index, hops=2, window=WINDOW).opens_incident
    assert correlate(
        "api-gateway", T0, ServiceGraph.empty(), MemoryIndex(), hops=2, window=WINDOW
    ).opens_incident


# -- ingestion order does not change the grouping (the real stage, on SQLite) -----------------

SERVICES = sorted(ServiceGraph.from_file(EXAMPLE).services())
# No P0: a critical alert inhibits warnings of its service only once it has been processed,
# so which alerts are muted legitimately depends on the order. Grouping must not.
SEVERITIES = ("P1", "P2", "P3")


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file holding the example graph, copied for each example."""
    path = tmp_path_factory.mktemp("template") / "incidents.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = create_db_engine(url)
    with make_session_factory(engine).begin() as session:
        save_graph(session, ServiceGraph.from_file(EXAMPLE))
    engine.dispose()
    return path


def group_in_order(
    template: Path, burst: Sequence[tuple[int, int, str]], order: Sequence[int]
) -> set[frozenset[str]]:
    """Run one job per alert in `order`; the fingerprints grouped by surviving incident."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "incidents.db"
        shutil.copy(template, path)
        url = f"sqlite:///{path}"
        engine = create_db_engine(url)
        sessions = make_session_factory(engine)
        # One job per run: the jobs must run in exactly the order under test.
        config = Settings(
            database_url=url,
            broker_url="",
            config="",
            log_json=False,
            pipeline={"max_jobs_per_run": 1},  # type: ignore[arg-type]
        )
        base = utcnow().replace(microsecond=0) - timedelta(minutes=10)
        jobs: list[int] = []
        with sessions.begin() as session:
            for n, (service_no, offset, severity) in enumerate(burst):
                service = SERVICES[service_no]
                labels = {"alertname": f"A{n}", "service": service}
                starts = base + timedelta(seconds=offset)
                session.add(
                    stored_alert(
                        labels, service=service, severity=severity, starts_at=starts, received=base
                    )
                )
                job = PipelineJob(created_at=base, fingerprints=[label_fingerprint(labels)])
                session.add(job)
                session.flush()
                assert job.id is not None
                jobs.append(job.id)
        for position in order:
            assert run_job(sessions, jobs[position], config) == "done"
        with engine.connect() as conn:
            incidents = {
                row[0]: (row[1], row[2])
                for row in conn.execute(sa.text("SELECT id, status, merged_into FROM incidents"))
            }
            links = conn.execute(sa.text("SELECT incident_id, fingerprint FROM incident_alerts"))
            groups: dict[int, set[str]] = {}
            for incident_id, fingerprint in links:
                # A merged incident counts as part of the one it was merged into.
                while incidents[incident_id][0] == "merged":
                    incident_id = incidents[incident_id][1]
                groups.setdefault(incident_id, set()).add(fingerprint)
        engine.dispose()
    return {frozenset(g) for g in groups.values()}


def expected_groups(
    graph: ServiceGraph, burst: Sequence[tuple[int, int, str]]
) -> set[frozenset[str]]:
    """Connected components of "services within two hops" over the burst's alerts."""
    prints = [
        label_fingerprint({"alertname": f"A{n}", "service": SERVICES[s]})
        for n, (s, _, _) in enumerate(burst)
    ]
    parent = list(range(len(burst)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, (a, _, _) in enumerate(burst):
        for j, (b, _, _) in enumerate(burst[:i]):
            if graph.distance(SERVICES[a], SERVICES[b], 2) is not None:
                parent[find(i)] = find(j)
    groups: dict[int, set[str]] = {}
    for i, fingerprint in enumerate(prints):
        groups.setdefault(find(i), set()).add(fingerprint)
    return {frozenset(g) for g in groups.values()}


bursts = st.lists(
    st.tuples(
        st.integers(0, len(SERVICES) - 1),
        st.integers(0, 300),  # all within five minutes
        st.sampled_from(SEVERITIES),
    ),
    min_size=2,
    max_size=7,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), burst=bursts)
def test_ingestion_order_does_not_change_the_grouping(
    template_db: Path, graph: ServiceGraph, data: st.DataObject, burst: list[tuple[int, int, str]]
) -> None:
    order = data.draw(st.permutations(range(len(burst))), label="order")
    in_time_order = group_in_order(
        template_db, burst, sorted(range(len(burst)), key=lambda n: (burst[n][1], n))
    )
    shuffled = group_in_order(template_db, burst, order)
    assert shuffled == in_time_order
    assert in_time_order == expected_groups(graph, burst)


def test_order_does_not_change_the_grouping_across_more_than_one_window(
    template_db: Path, graph: ServiceGraph
) -> None:
    # cache-redis at 0 s, ai-analysis-service at 1 s, api-gateway at 601 s. cache-redis and
    # ai-analysis-service are three hops apart; the gateway is near both, but 601 s after
    # the cache alert (more than the 600 s window) and 600 s after the ai-analysis one.
    cache, ai, gateway = (
        SERVICES.index(s) for s in ("cache-redis", "ai-analysis-service", "api-gateway")
    )
    burst = [(cache, 0, "P2"), (ai, 1, "P2"), (gateway, 601, "P2")]
    in_time_order = group_in_order(template_db, burst, [0, 1, 2])
    assert len(in_time_order) == 2  # {cache}, {ai, gateway}
    # ai-analysis first, then the gateway (600 s after it: joins), then the cache alert:
    # 601 s from the gateway, so it stays apart, whatever the order.
    assert group_in_order(template_db, burst, [1, 2, 0]) == in_time_order
