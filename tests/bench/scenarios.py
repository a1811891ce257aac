"""The scenarios of `make bench`: batches, single alerts, INFO logging, ingest only, and
the production shape with a Celery worker."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

from tests.bench import payloads, rawdb
from tests.bench.bench import (
    BATCH_ALERTS_PER_SECOND,
    PACED_SECONDS,
    PER_BATCH,
    SINGLE_PER_SECOND,
    WARMUP_BATCH_BODIES,
    WARMUP_SECONDS,
    WARMUP_SINGLE_BODIES,
    Bench,
    Figures,
    Ledger,
    running,
)
from tests.bench.payloads import Body
from tests.bench.service import (
    Server,
    Worker,
    throwaway_database,
)


def _resent(bodies: Sequence[Body], indices: Sequence[int], per_body: int) -> list[Body]:
    """The alerts of the given bodies again, with an annotation that makes each body new."""
    out = []
    for i in sorted(indices):
        alerts: list[dict[str, Any]] = orjson.loads(bodies[i].data)["alerts"]
        out.extend(payloads.bodies(payloads.resent(alerts, 1), per_body))
    return out


@dataclass
class Prepared:
    """Every body of every phase, built before any clock starts."""

    batch_warm_alerts: list[dict[str, Any]]
    batch_new_alerts: list[dict[str, Any]]
    batch_warm: list[Body]
    batch_new: list[Body]
    raw_warm: list[rawdb.Batch]
    raw_new: list[rawdb.Batch]
    single_warm: list[Body]
    single_new: list[Body]
    paced: list[Body]
    paced_half: list[Body]


def prepare(args: argparse.Namespace) -> Prepared:
    """Build the request bodies and raw rows."""
    d = args.duration
    batch_count = max(10, int(BATCH_ALERTS_PER_SECOND * d / PER_BATCH))
    single_count = max(100, int(SINGLE_PER_SECOND * d))
    paced_count = int(args.paced_rate * PACED_SECONDS) + 1
    warm_alerts = payloads.new_alerts("bw", WARMUP_BATCH_BODIES * PER_BATCH, PER_BATCH)
    new_alerts = payloads.new_alerts("b", batch_count * PER_BATCH, PER_BATCH)
    return Prepared(
        batch_warm_alerts=warm_alerts,
        batch_new_alerts=new_alerts,
        batch_warm=payloads.bodies(warm_alerts, PER_BATCH),
        batch_new=payloads.bodies(new_alerts, PER_BATCH),
        # (c) writes the very rows that (a) sends, into a table of its own.
        raw_warm=rawdb.make_batches(warm_alerts, PER_BATCH),
        raw_new=rawdb.make_batches(new_alerts, PER_BATCH),
        single_warm=payloads.bodies(payloads.new_alerts("sw", WARMUP_SINGLE_BODIES, 1), 1),
        single_new=payloads.bodies(payloads.new_alerts("s", single_count, 1), 1),
        paced=payloads.bodies(payloads.new_alerts("p", paced_count, 1), 1),
        paced_half=payloads.bodies(payloads.new_alerts("h", paced_count, 1), 1),
    )


@dataclass
class Results:
    """The figures the summary quotes."""

    raw_new: Figures | None = None
    raw_update: Figures | None = None
    batch_new: Figures | None = None
    batch_update: Figures | None = None
    single_new: Figures | None = None
    single_update: Figures | None = None
    paced: Figures | None = None
    paced_half: Figures | None = None
    info: Figures | None = None
    info_log_bytes: int = 0
    ingest_batch: Figures | None = None
    ingest_single: Figures | None = None
    production: list[tuple[str, bool, Figures, float, int]] = field(default_factory=list)


def scenario_batches(bench: Bench, p: Prepared, out: Results) -> None:
    """(c) and (a) against one database."""
    bc = bench.args.batch_concurrency
    with throwaway_database("batches") as url:
        ledger = Ledger(raw_rows=set())
        with running(Server(url, "WARNING")) as server:
            rawdb.create_table(url)
            warm = rawdb.upsert_rate(url, p.raw_warm, duration=WARMUP_SECONDS)
            ledger.raw_rows = {a["fingerprint"] for a in p.batch_warm_alerts[: warm.rows]}
            pid = server.pid
            out.raw_new = bench.raw_phase("(c) psycopg upsert x100, new", url, p.raw_new, pid)
            written = out.raw_new.alerts
            ledger.raw_rows.update(a["fingerprint"] for a in p.batch_new_alerts[:written])
            again_raw = p.raw_new[: out.raw_new.requests]
            out.raw_update = bench.raw_phase("(c) psycopg upsert x100, update", url, again_raw, pid)
            out.batch_new, result = bench.phase(
                "(a) webhook x100, new alerts",
                server,
                ledger,
                p.batch_new,
                concurrency=bc,
                warmup=p.batch_warm,
            )
            again = _resent(p.batch_new, result.accepted, PER_BATCH)
            again_warm = _resent(p.batch_warm, range(len(p.batch_warm)), PER_BATCH)
            out.batch_update, _ = bench.phase(
                "(a) webhook x100, re-sent (update)",
                server,
                ledger,
                again,
                concurrency=bc,
                warmup=again_warm,
            )
        bench.verify("batches", url, ledger, server)


def scenario_single(bench: Bench, p: Prepared, out: Results) -> None:
    """(b): closed loop new and re-sent, then open loop at the target rate."""
    sc = bench.args.single_concurrency
    rate = bench.args.paced_rate
    with throwaway_database("single") as url:
        ledger = Ledger()
        with running(Server(url, "WARNING")) as server:
            out.single_new, result = bench.phase(
                "(b) webhook x1, new alerts",
                server,
                ledger,
                p.single_new,
                concurrency=sc,
                warmup=p.single_warm,
            )
            out.single_update, _ = bench.phase(
                "(b) webhook x1, re-sent (update)",
                server,
                ledger,
                _resent(p.single_new, result.accepted, 1),
                concurrency=sc,
            )
            out.paced, _ = bench.phase(
                "(b) webhook x1, open loop",
                server,
                ledger,
                p.paced,
                concurrency=64,
                rate=rate,
                duration=PACED_SECONDS,
            )
            capacity = out.single_new.request_rate
            if capacity < rate:
                half = max(10.0, round(capacity / 2, -1))
                out.paced_half, _ = bench.phase(
                    "(b) webhook x1, open loop, half load",
                    server,
                    ledger,
                    p.paced_half,
                    concurrency=64,
                    rate=half,
                    duration=PACED_SECONDS,
                )
        bench.verify("single", url, ledger, server)


def scenario_info(bench: Bench, p: Prepared, out: Results) -> None:
    """(b) new alerts once more with the server logging at INFO."""
    with throwaway_database("info") as url:
        ledger = Ledger()
        with running(Server(url, "INFO")) as server:
            logged = server.log_size()
            out.info, _ = bench.phase(
                "(b) webhook x1, new, INFO logging",
                server,
                ledger,
                p.single_new,
                concurrency=bench.args.single_concurrency,
                warmup=p.single_warm,
            )
            out.info_log_bytes = server.log_size() - logged
        bench.verify("info", url, ledger, server)


def scenario_ingest_only(bench: Bench, p: Prepared, out: Results) -> None:
    """(a) and (b) with a broker that nobody reads: ingestion without the pipeline."""
    with throwaway_database("ingest") as url:
        ledger = Ledger()
        with running(Server(url, "WARNING", broker_url="memory://")) as server:
            out.ingest_batch, _ = bench.phase(
                "(a) webhook x100, new, no pipeline",
                server,
                ledger,
                p.batch_new,
                concurrency=bench.args.batch_concurrency,
                warmup=p.batch_warm,
            )
            out.ingest_single, _ = bench.phase(
                "(b) webhook x1, new, no pipeline",
                server,
                ledger,
                p.single_new,
                concurrency=bench.args.single_concurrency,
                warmup=p.single_warm,
            )
        bench.verify("ingest only", url, ledger, server)


REDIS_BROKER = "redis://127.0.0.1:6379/14"
DRAIN_LIMIT_SECONDS = 120.0


def _graph_file(services: int) -> str:
    """A service tree over the services the bodies use (svc-N depends on svc-(N-1)//3)."""
    lines = ["services:"]
    for i in range(services):
        lines.append(f"  - name: svc-{i}")
        lines.append(f"    team: team-{i % 7}")
        if i:
            lines.append(f"    depends_on: [svc-{(i - 1) // 3}]")
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - removed by the caller
        "w", prefix="incidents-bench-graph-", suffix=".yaml", delete=False
    )
    with handle:
        handle.write("\n".join(lines) + "\n")
    return handle.name


def _drain(url: str) -> float:
    """Seconds until the pipeline has run every job (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_LIMIT_SECONDS:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pipeline_jobs WHERE status <> 'done'"
            ).fetchone()
        if row is not None and row[0] == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    return float("inf")


def _incident_count(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'open'), count(*) FROM incidents"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def scenario_production(bench: Bench, p: Prepared, out: Results) -> None:
    """The production shape: Redis broker, a separate Celery worker running the pipeline.

    Once with correlation on (a 200-service graph over the services the alerts name) and
    once with it off; after each load phase, the time for the worker to finish every job
    gives the end-to-end rate (alerts accepted and turned into incidents per second).
    """
    import redis

    graph = _graph_file(200)
    try:
        for correlation in (True, False):
            extra = {
                "INCIDENTS_CORRELATION__ENABLED": "true" if correlation else "false",
                "INCIDENTS_CORRELATION__GRAPH_FILE": graph,
            }
            tag = "on" if correlation else "off"
            client = redis.Redis.from_url(REDIS_BROKER)
            client.flushdb()
            client.close()
            with throwaway_database(f"prod_{tag}") as url:
                ledger = Ledger()
                worker = Worker(url, REDIS_BROKER, extra)
                try:
                    with running(Server(url, "WARNING", REDIS_BROKER, extra)) as server:
                        worker.start()
                        for kind, bodies, warm, conc in (
                            ("x100", p.batch_new, p.batch_warm, bench.args.batch_concurrency),
                            ("x1", p.single_new, p.single_warm, bench.args.single_concurrency),
                        ):
                            figures, _ = bench.phase(
                                f"(p) {kind} + worker, correlation {tag}",
                                server,
                                ledger,
                                bodies,
                                concurrency=conc,
                                warmup=warm,
                            )
                            drained = _drain(url)
                            open_, total = _incident_count(url)
                            out.production.append((kind, correlation, figures, drained, total))
                            print(
                                f"      pipeline finished {drained:.1f} s after the load; "
                                f"{total:,} incidents so far ({open_:,} open)",
                                flush=True,
                            )
                finally:
                    worker.stop()
                bench.verify(f"production, correlation {tag}", url, ledger, server)
    finally:
        os.unlink(graph)
