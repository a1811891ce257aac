"""Incident-stage throughput with 1, 2 and 4 worker processes, and P0 latency with 10,000
muted alerts present.

    python -m tests.bench.scaling [--workers 1 2 4] [--alerts 20000]

Scaling: a 10,000-service graph made of 1,000 independent parts of 10 services; a storm
of alerts spread over those parts, stored in one go with one pipeline job per part (as
Alertmanager sends one body per group). Each worker count gets a fresh database and runs
the same jobs in that many processes; the figure is alerts per second through the
incident stage, from the first claim to the last commit. On this 2-core machine the
processes share the cores with PostgreSQL, so 4 workers cannot be twice 2.

Muted: a server with its embedded worker holds 10,000 inhibited alerts (a P0 and 10,000
P2 alerts on one service, which the default rule mutes); then a new P0 on another service
every 2 s, for long enough that upkeep runs several times, and the time from its webhook
to its incident. The same again with 2,000 quiet flapping incidents on one service
instead, which the upkeep closes 200 at a time while the probes run.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import random
import statistics
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import orjson
import psycopg

from tests.bench.service import HOST, TOKEN, Server, throwaway_database

PARTS = 1_000
PER_PART = 10


def part_graph() -> dict[str, Any]:
    """1,000 parts, each a small tree: s{p}-0 depends on s{p}-1 and s{p}-2, and so on."""
    services = []
    for p in range(PARTS):
        for i in range(PER_PART):
            deps = [f"p{p:04d}-s{c}" for c in (2 * i + 1, 2 * i + 2) if c < PER_PART]
            services.append({"name": f"p{p:04d}-s{i}", "depends_on": deps})
    return {"services": services}


def _prepare(url: str, alerts: int) -> list[int]:
    """Migrate, store the graph, the alerts and one job per part; return the job ids."""
    from incidents.correlation.graph import ServiceGraph
    from incidents.correlation.store import save_graph
    from incidents.db import create_db_engine, make_session_factory, utcnow
    from incidents.migrate import upgrade
    from incidents.models import PipelineJob
    from tests.factories import stored_alert

    upgrade(url)
    engine = create_db_engine(url)
    sessions = make_session_factory(engine)
    rng = random.Random(7)
    now = utcnow()
    by_part: dict[int, list[str]] = {}
    with sessions.begin() as session:
        save_graph(session, ServiceGraph.from_document(part_graph()))
        for n in range(alerts):
            part = n % PARTS
            service = f"p{part:04d}-s{rng.randrange(PER_PART)}"
            labels = {"alertname": f"Storm{n}", "service": service}
            alert = stored_alert(
                labels,
                service=service,
                severity="P2",
                starts_at=now - timedelta(seconds=rng.randint(0, 120)),
                received=now,
            )
            session.add(alert)
            by_part.setdefault(part, []).append(alert.fingerprint)
        session.flush()
        jobs = [PipelineJob(created_at=now, fingerprints=fps) for fps in by_part.values()]
        session.add_all(jobs)
        session.flush()
        ids = [int(job.id or 0) for job in jobs]
    engine.dispose()
    return ids


def _work(url: str, job_ids: list[int]) -> None:
    from incidents.config import Settings
    from incidents.db import create_db_engine, make_session_factory
    from incidents.pipeline.runner import run_job

    settings = Settings(
        database_url=url,
        broker_url="",
        config="",
        log_json=False,
        pipeline={"max_jobs_per_run": 1},  # type: ignore[arg-type]
    )
    engine = create_db_engine(url)
    sessions = make_session_factory(engine)
    for job_id in job_ids:
        run_job(sessions, job_id, settings)
    engine.dispose()


def scaling(workers: Sequence[int], alerts: int) -> list[str]:
    """Alerts per second through the incident stage for each worker count."""
    lines = []
    base = None
    for count in workers:
        with throwaway_database(f"scaling{count}") as url:
            sa_url = url.replace("postgresql://", "postgresql+psycopg://")
            ids = _prepare(sa_url, alerts)
            context = multiprocessing.get_context("spawn")
            procs = [
                context.Process(target=_work, args=(sa_url, ids[w::count])) for w in range(count)
            ]
            started = time.perf_counter()
            for proc in procs:
                proc.start()
            for proc in procs:
                proc.join()
            seconds = time.perf_counter() - started
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'done'), "
                    "(SELECT count(*) FROM incidents WHERE status = 'open') FROM pipeline_jobs"
                ).fetchone()
            done, opened = (row[0], row[1]) if row else (0, 0)
            rate = alerts / seconds
            base = base or rate
            lines.append(
                f"{count} worker(s): {alerts:,} alerts in {len(ids):,} jobs over {PARTS:,} "
                f"independent parts: {seconds:.1f} s, {rate:,.0f} alerts/s "
                f"({rate / base:.2f}x), {done:,} jobs done, {opened:,} open incidents"
            )
    return lines


def _post(port: int, alerts: list[dict[str, Any]]) -> None:
    from tests.factories import am_payload

    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request(
            "POST",
            "/api/v1/alerts/alertmanager",
            body=orjson.dumps(am_payload(alerts)),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    finally:
        conn.close()


def _incident_for(port: int, service: str) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(
            "GET",
            f"/api/v1/incidents?service={service}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        response = conn.getresponse()
        return bool(orjson.loads(response.read())["items"])
    finally:
        conn.close()


# Open flapping incidents on one service, 5 resolved members each, quiet for an hour: the
# upkeep closes them a batch at a time while the probes run.
FLAPPING_SQL = (
    """
    INSERT INTO incidents (id, status, severity, title, opened_at, updated_at, first_alert_at,
        last_alert_at, services, root_cause_candidates, blast_radius, flapping)
    SELECT 1000000 + g, 'open', 'P2', 'flapping ' || g, now() - interval '2 hours', now(),
        now() - interval '2 hours', now() - interval '2 hours', '["flappy"]', '[]', '[]', true
    FROM generate_series(1, %(n)s) g
    """,
    """
    INSERT INTO incident_alerts (incident_id, fingerprint, service, severity, starts_at,
        status, joined_at, joined_because)
    SELECT 1000000 + i, 'flap' || i || '-' || j, 'flappy', 'P2', now() - interval '2 hours',
        'resolved', now() - interval '2 hours', '{}'
    FROM generate_series(1, %(n)s) i, generate_series(1, 5) j
    """,
    """
    INSERT INTO alert_states (fingerprint, last_status, last_state_at, updated_at, flapping,
        transitions, silenced_by, inhibited_by)
    SELECT 'flap' || i || '-' || j, 'resolved', now() - interval '1 hour', now(), true,
        '[]', '[]', '[]'
    FROM generate_series(1, %(n)s) i, generate_series(1, 5) j
    """,
)


def muted_latency(muted: int = 10_000, probes: int = 20, flapping: int = 0) -> list[str]:
    """Seconds from a P0's webhook to its incident, with `muted` inhibited alerts stored
    and `flapping` quiet flapping incidents for the upkeep to close."""
    from tests.factories import am_alert

    with throwaway_database("muted") as url:
        server = Server(url, "WARNING")
        try:
            server.start()
            if flapping:
                with psycopg.connect(url) as conn:
                    for statement in FLAPPING_SQL:
                        conn.execute(statement, {"n": flapping})
            critical = {"alertname": "DatabaseDown", "service": "db", "severity": "critical"}
            _post(server.port, [am_alert(critical)])
            for start in range(0, muted, 500):
                batch = [
                    am_alert({"alertname": f"Slow{n}", "service": "db", "severity": "warning"})
                    for n in range(start, min(muted, start + 500))
                ]
                _post(server.port, batch)
            with psycopg.connect(url) as conn:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    row = conn.execute(
                        "SELECT count(*) FROM alert_states "
                        "WHERE jsonb_array_length(inhibited_by) > 0"
                    ).fetchone()
                    if row and row[0] >= muted:
                        break
                    time.sleep(0.5)
                held = row[0] if row else 0
            timings = []
            settled = 0
            for n in range(probes):
                service = f"probe-{n}"
                labels = {"alertname": "Down", "service": service, "severity": "critical"}
                started = time.perf_counter()
                _post(server.port, [am_alert(labels)])
                while not _incident_for(server.port, service):
                    time.sleep(0.01)
                timings.append(time.perf_counter() - started)
                time.sleep(2)
            if flapping:
                with psycopg.connect(url) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM incidents WHERE flapping AND status = 'resolved'"
                    ).fetchone()
                    settled = row[0] if row else 0
        finally:
            server.close()
    ordered = sorted(timings)
    present = f"{held:,} muted alerts stored"
    if flapping:
        present += f" and {flapping:,} quiet flapping incidents ({settled:,} closed meanwhile)"
    return [
        f"P0 webhook to incident with {present} ({probes} probes over "
        f"{probes * 2} s, upkeep every 15 s): p50 {statistics.median(ordered) * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms"
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the scaling and muted-latency figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--no-muted", action="store_true")
    args = parser.parse_args(argv)
    for line in scaling(args.workers, args.alerts):
        print(line, flush=True)
    if not args.no_muted:
        for line in muted_latency():
            print(line, flush=True)
        for line in muted_latency(muted=0, flapping=2_000):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
