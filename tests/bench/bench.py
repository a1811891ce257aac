"""The load-phase machinery of `make bench`: figures, the acknowledged ledger, phases."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import psycopg

from tests.bench import rawdb
from tests.bench.httpload import LoadResult, encode_post, new_event_loop, run_load
from tests.bench.payloads import Body
from tests.bench.service import (
    HOST,
    TOKEN,
    CpuUse,
    Server,
    cpu_between,
    sample_cpu,
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
