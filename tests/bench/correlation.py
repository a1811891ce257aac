"""The cost of the correlate step (rule v2's place()) with a 10,000-service graph and
10,000 open incidents.

    python -m tests.bench.correlation [--services 10000] [--incidents 10000] [--alerts 20000]

Two figures:
- place() itself against an in-memory index of the open incidents: the bounded directed
  graph searches plus the index look-ups, per alert;
- the same with the index the pipeline uses in production (the `incident_services`
  table on PostgreSQL), so the database round trip is visible too.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from incidents.correlation.graph import ServiceGraph
from incidents.correlation.grouping import OpenIncident, place
from incidents.correlation.index import IncidentLink, MemoryIndex
from incidents.correlation.rule import CorrelationRule

SEED = 20261123
T0 = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


def build_graph(services: int, rng: random.Random) -> tuple[ServiceGraph, float]:
    """A layered graph like a real estate: each service depends on ~2 in lower layers."""
    names = [f"svc-{i:05d}" for i in range(services)]
    layers = 8
    per_layer = max(1, services // layers)
    doc = []
    for i, name in enumerate(names):
        layer = i // per_layer
        lower_start = (layer + 1) * per_layer
        deps: set[str] = set()
        if lower_start < services:
            for _ in range(rng.randint(1, 3)):
                deps.add(names[rng.randrange(lower_start, min(services, lower_start + per_layer))])
        doc.append({"name": name, "team": f"team-{i % 40}", "depends_on": sorted(deps)})
    started = time.perf_counter()
    graph = ServiceGraph.from_document({"services": doc})
    return graph, time.perf_counter() - started


@dataclass
class Made:
    """An open incident of the benchmark: its services and time span."""

    id: int
    services: set[str]
    first_alert_at: datetime
    last_alert_at: datetime


def build_index(
    graph: ServiceGraph, rule: CorrelationRule, incidents: int, rng: random.Random
) -> tuple[MemoryIndex, dict[int, OpenIncident], list[Made]]:
    """Open incidents spread over the graph, each on 1 to 3 neighbouring services."""
    names = graph.services()
    index = MemoryIndex()
    lookup: dict[int, OpenIncident] = {}
    made = []
    for i in range(incidents):
        root = rng.choice(names)
        near = sorted(set(rule.below(root)) | set(rule.above(root)))
        services = {root, *rng.sample(near, min(len(near), rng.randint(0, 2)))}
        first = T0 + timedelta(seconds=rng.randint(0, 3600))
        last = first + timedelta(seconds=rng.randint(0, 600))
        for service in services:
            for at in {first, last}:
                index.add_link(IncidentLink(i + 1, service, at))
        lookup[i + 1] = OpenIncident(i + 1, first, tuple(rule.roots(services)))
        made.append(Made(i + 1, services, first, last))
    return index, lookup, made


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of the values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def time_memory(
    rule: CorrelationRule,
    index: MemoryIndex,
    lookup: dict[int, OpenIncident],
    alerts: int,
    rng: random.Random,
) -> tuple[list[float], int]:
    """Seconds per place() call over random alerts; and how many joined something."""
    names = rule.graph.services()
    samples = [
        (rng.choice(names), T0 + timedelta(seconds=rng.randint(0, 4200))) for _ in range(alerts)
    ]
    window = timedelta(minutes=10)
    timings = []
    joined = 0
    clock = time.perf_counter
    for service, starts_at in samples:
        started = clock()
        placed = place(rule, service, starts_at, index, lookup.__getitem__, window)
        timings.append(clock() - started)
        joined += placed.target is not None
    return timings, joined


def time_database(
    rule: CorrelationRule,
    incidents: Sequence[Made],
    lookup: dict[int, OpenIncident],
    alerts: int,
    rng: random.Random,
) -> list[float] | str:
    """The same with the PostgreSQL-backed index the pipeline uses."""
    from sqlalchemy import insert, text

    from incidents.db import create_db_engine, make_session_factory
    from incidents.migrate import upgrade
    from incidents.models import Incident, IncidentAlert
    from incidents.pipeline.incident_state import DbIncidentIndex
    from tests.bench.service import PG_HOST, PG_PORT, port_open, throwaway_database

    if not port_open(PG_HOST, PG_PORT):
        return "skipped: PostgreSQL is not running"
    with throwaway_database("correlation") as url:
        upgrade(url)
        engine = create_db_engine(url)
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            session.execute(
                insert(Incident.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "id": i.id,
                        "status": "open",
                        "severity": "P2",
                        "title": f"incident {i.id}",
                        "opened_at": i.first_alert_at,
                        "updated_at": i.last_alert_at,
                        "first_alert_at": i.first_alert_at,
                        "last_alert_at": i.last_alert_at,
                        "services": sorted(i.services),
                        "root_cause_candidates": [],
                        "blast_radius": [],
                        "flapping": False,
                    }
                    for i in incidents
                ],
            )
            session.execute(
                insert(IncidentAlert.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "incident_id": i.id,
                        "fingerprint": f"{i.id:08x}{n:02d}",
                        "service": service,
                        "severity": "P2",
                        "starts_at": at,
                        "status": "firing",
                        "joined_at": at,
                        "joined_because": {},
                    }
                    for i in incidents
                    for n, (service, at) in enumerate(
                        (s, t)
                        for s in sorted(i.services)
                        for t in (i.first_alert_at, i.last_alert_at)
                    )
                ],
            )
        with engine.connect() as conn:
            # As autovacuum would after a bulk load; without it the planner scans.
            conn.execute(text("ANALYZE"))
            conn.commit()
        engine.dispose()
        engine = create_db_engine(url)
        sessions = make_session_factory(engine)
        names = rule.graph.services()
        window = timedelta(minutes=10)
        timings = []
        with sessions() as session:
            index = DbIncidentIndex(session, window)
            for _ in range(alerts):
                service = rng.choice(names)
                starts_at = T0 + timedelta(seconds=rng.randint(0, 4200))
                started = time.perf_counter()
                place(rule, service, starts_at, index, lookup.__getitem__, window)
                timings.append(time.perf_counter() - started)
        engine.dispose()
    return timings


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def run(services: int, incidents: int, alerts: int, db_alerts: int) -> list[str]:
    """Measure and return the printed lines."""
    rng = random.Random(SEED)
    graph, load_seconds = build_graph(services, rng)
    rule = CorrelationRule(graph, 2)
    index, lookup, made = build_index(graph, rule, incidents, rng)
    timings, joined = time_memory(rule, index, lookup, alerts, rng)
    lines = [
        f"graph: {len(graph):,} services built from a document in {load_seconds:.2f} s; "
        f"{incidents:,} open incidents; hops=2, window=10 min",
        f"correlate step (v2 place()) in memory, {alerts:,} alerts "
        f"({joined:,} joined an incident): "
        f"p50 {_us(percentile(timings, 50))} us, p99 {_us(percentile(timings, 99))} us, "
        f"mean {_us(statistics.fmean(timings))} us, max {_us(max(timings))} us",
    ]
    db = time_database(rule, made, lookup, db_alerts, rng)
    if isinstance(db, str):
        lines.append(f"correlate step with the PostgreSQL index: {db}")
    else:
        lines.append(
            f"correlate step with the PostgreSQL index, {db_alerts:,} alerts: "
            f"p50 {_us(percentile(db, 50))} us, p99 {_us(percentile(db, 99))} us, "
            f"max {_us(max(db))} us"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print the correlation figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--db-alerts", type=int, default=3_000)
    args = parser.parse_args(argv)
    for line in run(args.services, args.incidents, args.alerts, args.db_alerts):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
