"""`make bench`: how fast the service takes Alertmanager webhooks on PostgreSQL.

    python -m tests.bench.run [--duration 8] [--batch-concurrency 8] [--single-concurrency 32]

Each scenario gets a throwaway database and a fresh `incidents serve` process (embedded
worker, no broker), so no scenario inherits another's pipeline backlog:

batches  (c) a plain psycopg batch upsert of the rows of (a) into a scratch table, 100 rows
             and one commit per batch: the database's own rate;
         (a) webhook bodies of 100 alerts: alerts/s and request latency, new alerts and
             the same alerts re-sent (updates); (a)/(c) is the fraction of the database's
             rate that the service reaches;
single   (b) webhook bodies of 1 alert: requests/s and latency in a closed loop, new and
             re-sent, then latency at a fixed offered rate (open loop, 1,000/s by default);
info     (b) again, same bodies, the server logging at INFO instead of WARNING;
ingest   (only with --without-pipeline) (a) and (b) with a broker that nobody reads, so
             the server ingests without running the pipeline: the pipeline's share.
prod     the production shape: Redis broker and a separate Celery worker process, (a) and
             (b) with correlation on (a 200-service graph) and off; after each load the
             time until the worker has run every job gives the end-to-end rate;
storm    one body of 50,000 alerts (about 40 MB): the server's peak RSS while it arrives,
             and the embedded pipeline's time for its job (tests/bench/storm.py);
then     correlate() timed on a 10,000-service graph with 10,000 open incidents, in
             memory and with the PostgreSQL-backed index (tests/bench/correlation.py).

Every phase has a warm-up that is not counted, then runs for --duration seconds or until
its pre-built bodies run out. Afterwards the rows in each database are counted against
what the service acknowledged. The benchmark prints figures and asserts nothing; the exit
status is 1 only when a database does not hold what the service acknowledged.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

from tests.bench import correlation, payloads, rawdb, storm
from tests.bench.httpload import LoadResult, encode_post, new_event_loop, run_load
from tests.bench.payloads import Body
from tests.bench.service import (
    HOST,
    PG_HOST,
    PG_PORT,
    ROOT,
    TOKEN,
    CpuUse,
    Server,
    Worker,
    cpu_between,
    port_open,
    sample_cpu,
    throwaway_database,
)

PATH = "/api/v1/alerts/alertmanager"
PER_BATCH = 100
WARMUP_SECONDS = 1.5
PACED_SECONDS = 5.0
# Bodies are built before the clock starts: as many as a phase could use at these rates
# (a few times what two cores do today) per second of --duration. A faster server ends a
# phase early by count rather than by time, which still gives a true rate.
BATCH_ALERTS_PER_SECOND = 15_000
SINGLE_PER_SECOND = 3_000
WARMUP_BATCH_BODIES = 40
WARMUP_SINGLE_BODIES = 1_500
# CPU used outside the benchmark (percent of one core) above which a phase is flagged.
BUSY_OTHER_PERCENT = 25.0


@dataclass
class Figures:
    """One printed line: a phase's throughput, latency and who used the CPU."""

    name: str
    concurrency: int | str
    requests: int
    alerts: int
    elapsed: float
    p50: float
    p99: float
    worst: float
    cpu: CpuUse | None = None
    problems: str = ""

    @property
    def alert_rate(self) -> float:
        """Alerts (rows) per second."""
        return self.alerts / self.elapsed if self.elapsed else 0.0

    @property
    def request_rate(self) -> float:
        """Requests (statements) per second."""
        return self.requests / self.elapsed if self.elapsed else 0.0


@dataclass
class Ledger:
    """What the service acknowledged in one database, to check the rows against."""

    requests: int = 0
    alerts: int = 0
    fingerprints: set[str] = field(default_factory=set)
    raw_rows: set[str] | None = None

    def record(self, bodies: Sequence[Body], result: LoadResult) -> None:
        """Count the bodies the service answered "accepted"."""
        for index in result.accepted:
            body = bodies[index]
            self.requests += 1
            self.alerts += len(body.fingerprints)
            self.fingerprints.update(body.fingerprints)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


HEADER = (
    f"{'phase':<36} {'conc':>10} {'requests':>8} {'alerts':>7} {'secs':>5} "
    f"{'alerts/s':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
)


def _line(f: Figures) -> str:
    text = (
        f"{f.name:<36} {f.concurrency!s:>10} {f.requests:>8} {f.alerts:>7} {f.elapsed:>5.1f} "
        f"{f.alert_rate:>9,.0f} {f.request_rate:>7,.0f} {_ms(f.p50):>7} {_ms(f.p99):>7} "
        f"{_ms(f.worst):>7}"
    )
    return text + (f"\n      ! {f.problems}" if f.problems else "")


class Bench:
    """Runs the phases and keeps their figures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = new_event_loop()
        self.figures: list[Figures] = []
        self.checks: list[str] = []
        self.ok = True

    def close(self) -> None:
        """Close the client's event loop."""
        self.loop.close()

    def _keep(self, figures: Figures) -> Figures:
        self.figures.append(figures)
        print(f"  {_line(figures)}", flush=True)
        return figures

    def _load(
        self,
        server: Server,
        bodies: Sequence[Body],
        *,
        concurrency: int,
        duration: float,
        rate: float | None = None,
    ) -> tuple[LoadResult, CpuUse]:
        requests = [encode_post(HOST, server.port, PATH, b.data, TOKEN) for b in bodies]
        before = sample_cpu(server.pid)
        result = self.loop.run_until_complete(
            run_load(
                HOST, server.port, requests, concurrency=concurrency, duration=duration, rate=rate
            )
        )
        return result, cpu_between(before, sample_cpu(server.pid))

    def phase(
        self,
        name: str,
        server: Server,
        ledger: Ledger,
        bodies: Sequence[Body],
        *,
        concurrency: int,
        warmup: Sequence[Body] = (),
        rate: float | None = None,
        duration: float | None = None,
    ) -> tuple[Figures, LoadResult]:
        """A warm-up (not counted), then the timed run, with the bodies encoded beforehand."""
        if warmup:
            done, _ = self._load(server, warmup, concurrency=concurrency, duration=WARMUP_SECONDS)
            ledger.record(warmup, done)
        result, cpu = self._load(
            server,
            bodies,
            concurrency=concurrency,
            duration=duration or self.args.duration,
            rate=rate,
        )
        ledger.record(bodies, result)
        problem = result.first_problem or ""
        if result.not_accepted or result.errors:
            problem = (
                f"{result.not_accepted} answers not 'accepted', {result.errors} connection "
                f"errors; first: {problem}"
            )
        figures = Figures(
            name=name,
            concurrency=concurrency if rate is None else f"{concurrency}@{rate:g}/s",
            requests=result.completed,
            alerts=sum(len(bodies[i].fingerprints) for i in result.accepted),
            elapsed=result.elapsed,
            p50=result.percentile(0.50),
            p99=result.percentile(0.99),
            worst=max(result.latencies, default=0.0),
            cpu=cpu,
            problems=problem,
        )
        return self._keep(figures), result

    def raw_phase(
        self, name: str, url: str, batches: Sequence[rawdb.Batch], server_pid: int
    ) -> Figures:
        """Time the plain psycopg upsert (the server is idle meanwhile)."""
        before = sample_cpu(server_pid)
        result = rawdb.upsert_rate(url, batches, duration=self.args.duration)
        cpu = cpu_between(before, sample_cpu(server_pid))
        ordered = sorted(result.latencies) or [0.0]
        return self._keep(
            Figures(
                name=name,
                concurrency=1,
                requests=result.batches,
                alerts=result.rows,
                elapsed=result.elapsed,
                p50=ordered[len(ordered) // 2],
                p99=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
                worst=ordered[-1],
                cpu=cpu,
            )
        )

    def verify(self, scenario: str, url: str, ledger: Ledger, server: Server) -> None:
        """Count the rows in the database against what the service acknowledged."""
        with psycopg.connect(url) as conn:
            alerts, received = conn.execute(
                "SELECT count(*), coalesce(sum(receive_count), 0) FROM alerts"
            ).fetchone() or (0, 0)
            stored, duplicates = conn.execute(
                "SELECT count(*) FILTER (WHERE NOT duplicate), count(*) FILTER (WHERE duplicate)"
                " FROM webhook_deliveries"
            ).fetchone() or (0, 0)
            jobs = conn.execute(
                "SELECT status, count(*), coalesce(sum(jsonb_array_length(fingerprints)), 0)"
                " FROM pipeline_jobs GROUP BY status ORDER BY status"
            ).fetchall()
        checks: list[tuple[str, int, int]] = [
            ("alert rows = distinct fingerprints accepted", alerts, len(ledger.fingerprints)),
            ("sum(receive_count) = alerts accepted", received, ledger.alerts),
            ("stored deliveries = requests accepted", stored, ledger.requests),
            ("deliveries stored as duplicates", duplicates, 0),
        ]
        if ledger.raw_rows is not None:
            checks.append(
                (f"{rawdb.TABLE} rows = rows upserted", rawdb.count_rows(url), len(ledger.raw_rows))
            )
        self.checks.append(f"{scenario}:")
        for label, got, want in checks:
            good = got == want
            self.ok = self.ok and good
            self.checks.append(
                f"  {label:<46} {got:>9} vs {want:>9}  {'ok' if good else 'MISMATCH'}"
            )
        backlog = ", ".join(f"{s} {n} ({a} alerts)" for s, n, a in jobs) or "none"
        self.checks.append(f"  pipeline jobs when the server stopped: {backlog}")
        done = sum(a for s, _, a in jobs if s == "done")
        served = server.served_seconds
        if server.broker_url:
            self.checks.append("  (no pipeline ran: its jobs went to a broker nobody reads)")
        elif served:
            self.checks.append(
                f"  pipeline throughput: {done} alerts in finished jobs in {served:.0f} s of"
                f" serving = {done / served:,.0f} alerts/s, against {ledger.alerts:,} accepted"
            )


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start the server, yield it, stop it and remove its log."""
    try:
        server.start()
        broker = f", broker {server.broker_url}" if server.broker_url else ""
        print(
            f"  -- server pid {server.pid}, port {server.port}, log level {server.log_level}"
            f"{broker}",
            flush=True,
        )
        yield server
    finally:
        server.close()


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


def _busy(f: Figures) -> bool:
    # In the production phases the worker's CPU shows as "other"; that is expected there.
    return f.cpu is not None and f.cpu.other > BUSY_OTHER_PERCENT and not f.name.startswith("(p)")


def _cpu_table(figures: Sequence[Figures]) -> list[str]:
    lines = [
        "CPU in percent of one core (the machine has 2). srv loop = the server's event-loop",
        "thread; srv thr = its other threads (ingest writer, embedded worker); other = kernel",
        "and processes outside the benchmark (in the (p) phases also the Celery worker);",
        "us/alert = CPU microseconds per alert.",
        f"{'phase':<36} {'srv loop':>8} {'srv thr':>8} {'postgres':>8} {'client':>8} "
        f"{'other':>8} {'machine':>8} {'srv us/al':>9} {'pg us/al':>9}",
    ]
    for f in figures:
        if f.cpu is None or not f.alerts:
            continue
        c = f.cpu
        per_alert = f.elapsed / f.alerts * 1e6 / 100  # percent of a core -> microseconds
        lines.append(
            f"{f.name:<36} {c.server_loop:>8.0f} {c.server_other:>8.0f} {c.postgres:>8.0f} "
            f"{c.client:>8.0f} {c.other:>8.0f} {c.machine:>7.0f}% {c.server * per_alert:>9.0f} "
            f"{c.postgres * per_alert:>9.0f}" + ("  <- busy machine" if _busy(f) else "")
        )
    if any(_busy(f) for f in figures):
        lines.append(
            "Phases marked 'busy machine' shared the CPU with processes outside the benchmark;"
        )
        lines.append("their figures understate the service. Re-run on a quiet machine.")
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _summary(args: argparse.Namespace, r: Results) -> list[str]:
    lines = []
    a_n, a_u, c_n, c_u = r.batch_new, r.batch_update, r.raw_new, r.raw_update
    if a_n and a_u and c_n and c_u:
        lines.append(
            f"(a) bodies of 100 alerts, {args.batch_concurrency} connections: "
            f"{a_n.alert_rate:,.0f} alerts/s new (p50 {_ms(a_n.p50)} ms, p99 {_ms(a_n.p99)} ms), "
            f"{a_u.alert_rate:,.0f} alerts/s re-sent (p50 {_ms(a_u.p50)}, p99 {_ms(a_u.p99)} ms)"
        )
        lines.append(
            f"(c) psycopg executemany upsert of 100 rows + commit, 1 connection: "
            f"{c_n.alert_rate:,.0f} rows/s new, {c_u.alert_rate:,.0f} rows/s update"
        )
        ratio_n = a_n.alert_rate / c_n.alert_rate if c_n.alert_rate else 0.0
        ratio_u = a_u.alert_rate / c_u.alert_rate if c_u.alert_rate else 0.0
        lines.append(
            f"(a)/(c) = {ratio_n:.0%} new, {ratio_u:.0%} update; target >= 50%: "
            f"{_met(ratio_n >= 0.5)}"
        )
    b_n, b_u = r.single_new, r.single_update
    if b_n and b_u:
        ok = b_n.request_rate >= 1000 and b_n.p99 < 0.050
        lines.append(
            f"(b) bodies of 1 alert, {args.single_concurrency} connections: "
            f"{b_n.request_rate:,.0f} req/s new (p50 {_ms(b_n.p50)} ms, p99 {_ms(b_n.p99)} ms), "
            f"{b_u.request_rate:,.0f} req/s re-sent (p99 {_ms(b_u.p99)} ms); "
            f"target >= 1,000/s with p99 < 50 ms: {_met(ok)}"
        )
    for paced in (r.paced, r.paced_half):
        if paced is None:
            continue
        offered = paced.concurrency
        lines.append(
            f"    offered {offered}: {paced.requests:,} answered in {paced.elapsed:.1f} s "
            f"({paced.request_rate:,.0f}/s), p50 {_ms(paced.p50)} ms, p99 {_ms(paced.p99)} ms"
        )
    if r.info and b_n:
        change = r.info.request_rate / b_n.request_rate - 1 if b_n.request_rate else 0.0
        per_request = r.info_log_bytes / max(r.info.requests, 1)
        lines.append(
            f"INFO vs WARNING logging, bodies of 1 alert: {r.info.request_rate:,.0f} vs "
            f"{b_n.request_rate:,.0f} req/s ({change:+.0%}), p99 {_ms(r.info.p99)} vs "
            f"{_ms(b_n.p99)} ms, about {per_request:.0f} bytes of log per request"
        )
    if r.ingest_batch and r.ingest_single and a_n and b_n:
        lines.append(
            f"Without the embedded pipeline: {r.ingest_batch.alert_rate:,.0f} vs "
            f"{a_n.alert_rate:,.0f} alerts/s in bodies of 100, "
            f"{r.ingest_single.request_rate:,.0f} vs {b_n.request_rate:,.0f} req/s single"
        )
    by_key = {(kind, on): (f, drained) for kind, on, f, drained, _ in r.production}
    prod_a, prod_b = by_key.get(("x100", True)), by_key.get(("x1", True))
    if prod_a and c_n and c_n.alert_rate:
        ratio = prod_a[0].alert_rate / c_n.alert_rate
        lines.append(
            f"production (a): {prod_a[0].alert_rate:,.0f} alerts/s in bodies of 100 "
            f"(p99 {_ms(prod_a[0].p99)} ms) = {ratio:.0%} of (c); target >= 50%: "
            f"{_met(ratio >= 0.5)}"
        )
    if prod_b:
        f = prod_b[0]
        ok = f.request_rate >= 1000 and f.p99 < 0.050
        lines.append(
            f"production (b): {f.request_rate:,.0f} req/s of 1 alert (p50 {_ms(f.p50)} ms, "
            f"p99 {_ms(f.p99)} ms); target >= 1,000/s with p99 < 50 ms: {_met(ok)}"
        )
    for kind in ("x100", "x1"):
        if (kind, True) not in by_key or (kind, False) not in by_key:
            continue
        (on, on_drain), (off, off_drain) = by_key[(kind, True)], by_key[(kind, False)]
        end_on = on.alerts / (on.elapsed + on_drain)
        end_off = off.alerts / (off.elapsed + off_drain)
        lines.append(
            f"production (API + Celery worker on Redis), bodies {kind}: accepted "
            f"{on.alert_rate:,.0f} alerts/s with correlation vs {off.alert_rate:,.0f} without "
            f"(p99 {_ms(on.p99)} vs {_ms(off.p99)} ms); end to end (until the worker finished) "
            f"{end_on:,.0f} vs {end_off:,.0f} alerts/s: {end_on / end_off - 1:+.0%} "
            f"(target: no worse than -33%: {_met(end_on >= end_off * 2 / 3)})"
        )
    return lines


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=8.0, help="timed seconds per phase")
    parser.add_argument("--batch-concurrency", type=int, default=8, help="connections for (a)")
    parser.add_argument("--single-concurrency", type=int, default=32, help="connections for (b)")
    parser.add_argument("--paced-rate", type=float, default=1000.0, help="open-loop rate for (b)")
    parser.add_argument("--no-info", action="store_true", help="skip the INFO logging run")
    parser.add_argument(
        "--without-pipeline", action="store_true", help="also run (a) and (b) without the pipeline"
    )
    parser.add_argument(
        "--no-production", action="store_true", help="skip the Redis + Celery worker runs"
    )
    parser.add_argument(
        "--no-correlation-micro", action="store_true", help="skip the correlate() timings"
    )
    parser.add_argument("--no-storm", action="store_true", help="skip the 50,000-alert body")
    parser.add_argument("--only-storm", action="store_true", help="run only the storm")
    args = parser.parse_args(argv)
    args.duration = min(max(args.duration, 1.0), 30.0)
    args.batch_concurrency = min(max(args.batch_concurrency, 1), 256)
    args.single_concurrency = min(max(args.single_concurrency, 1), 256)
    args.paced_rate = min(max(args.paced_rate, 10.0), 10_000.0)
    return args


def _environment() -> str:
    """Cores, versions and commit, so that two runs can be compared."""
    with psycopg.connect(f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres") as conn:
        row = conn.execute("SHOW server_version").fetchone()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=ROOT,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {row[0] if row else '?'}, commit {commit}"
    )


def _storm_only() -> int:
    print("Storm (one Alertmanager body)", flush=True)
    for line in storm.lines(storm.run()):
        print(f"  {line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scenario and print the figures; 1 if a database check fails."""
    args = _parse_args(argv)
    if not port_open(PG_HOST, PG_PORT):
        print(f"bench: PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"incidents ingestion benchmark: {_environment()}")
    if args.only_storm:
        return _storm_only()
    print("Building request bodies ...", flush=True)
    prepared = prepare(args)
    print(f"  done in {time.perf_counter() - started:.1f} s\n")
    print(f"  {HEADER}", flush=True)
    bench = Bench(args)
    results = Results()
    try:
        scenario_batches(bench, prepared, results)
        scenario_single(bench, prepared, results)
        if not args.no_info:
            scenario_info(bench, prepared, results)
        if args.without_pipeline:
            scenario_ingest_only(bench, prepared, results)
        if not args.no_production:
            scenario_production(bench, prepared, results)
    finally:
        bench.close()
    print()
    for line in _cpu_table(bench.figures):
        print(f"  {line}")
    print("\nSummary")
    for line in _summary(args, results):
        print(f"  {line}")
    if not args.no_storm:
        print("\nStorm (one Alertmanager body)", flush=True)
        for line in storm.lines(storm.run()):
            print(f"  {line}")
    if not args.no_correlation_micro:
        print("\nCorrelation step (10,000 services, 10,000 open incidents)")
        for line in correlation.run(10_000, 10_000, 20_000, 3_000):
            print(f"  {line}")
    print("\nDatabase check (each scenario's database, after its server stopped)")
    for line in bench.checks:
        print(f"  {line}")
    print(f"\nbench finished in {time.perf_counter() - started:.0f} s")
    return 0 if bench.ok else 1


if __name__ == "__main__":
    sys.exit(main())
