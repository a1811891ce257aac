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
then     the correlate step (rule v2 place()) timed on a 10,000-service graph with 10,000
             open incidents, in memory and with the PostgreSQL-backed index
             (tests/bench/correlation.py); the incident stage's throughput with 1, 2 and 4
             worker processes on a storm over 1,000 independent parts of a 10,000-service
             graph, and a new P0's latency to its incident with 10,000 muted alerts stored
             (tests/bench/scaling.py); notifications in the production shape with a fake
             Slack: a new P0's time to Slack under 200 alerts/s (opening hold off, and
             at its default), and what a storm of
             10,000 alerts in a minute sends to Slack (tests/bench/notify.py); the
             escalation sweep with 5,000 incidents escalating at once, in 1 and 2
             processes: its cost per cycle and how late steps run (tests/bench/escalation.py);
             playbook runs: a new incident to its first step's request, embedded and in the
             production shape, and steps a second on 1 and 4 threads (tests/bench/playbooks.py).

Every phase has a warm-up that is not counted, then runs for --duration seconds or until
its pre-built bodies run out. Afterwards the rows in each database are counted against
what the service acknowledged. The benchmark prints figures and asserts nothing; the exit
status is 1 only when a database does not hold what the service acknowledged.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence

import psycopg

from tests.bench import correlation, escalation, notify, playbooks, scaling, storm
from tests.bench.bench import (
    BUSY_OTHER_PERCENT,
    HEADER,
    Bench,
    Figures,
    _ms,
)
from tests.bench.scenarios import (
    Results,
    prepare,
    scenario_batches,
    scenario_info,
    scenario_ingest_only,
    scenario_production,
    scenario_single,
)
from tests.bench.service import (
    PG_HOST,
    PG_PORT,
    ROOT,
    port_open,
)


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
        "--no-correlation-micro", action="store_true", help="skip the correlate-step timings"
    )
    parser.add_argument(
        "--no-scaling",
        action="store_true",
        help="skip the worker-scaling and muted-latency figures",
    )
    parser.add_argument("--no-storm", action="store_true", help="skip the 50,000-alert body")
    parser.add_argument(
        "--no-notify", action="store_true", help="skip the notification (Slack) figures"
    )
    parser.add_argument(
        "--no-escalation", action="store_true", help="skip the escalation sweep figures"
    )
    parser.add_argument("--no-playbooks", action="store_true", help="skip the playbook run figures")
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
    if not args.no_scaling:
        print("\nIncident stage with 1, 2 and 4 worker processes (10,000-service graph)")
        for line in scaling.scaling([1, 2, 4], 20_000):
            print(f"  {line}", flush=True)
        print("\nA new P0 with 10,000 muted alerts stored")
        for line in scaling.muted_latency():
            print(f"  {line}", flush=True)
        print("\nA new P0 while the upkeep closes 2,000 quiet flapping incidents")
        for line in scaling.muted_latency(muted=0, flapping=2_000):
            print(f"  {line}", flush=True)
    if not args.no_notify:
        print("\nNotifications to a fake Slack, production shape (tests/bench/notify.py)")
        for line in notify.run():
            print(f"  {line}", flush=True)
    if not args.no_escalation:
        print("\nEscalation sweep (tests/bench/escalation.py)", flush=True)
        for line in escalation.run():
            print(f"  {line}", flush=True)
    if not args.no_playbooks:
        print("\nPlaybook runs (tests/bench/playbooks.py)", flush=True)
        for line in playbooks.run():
            print(f"  {line}", flush=True)
    print("\nDatabase check (each scenario's database, after its server stopped)")
    for line in bench.checks:
        print(f"  {line}")
    print(f"\nbench finished in {time.perf_counter() - started:.0f} s")
    return 0 if bench.ok else 1


if __name__ == "__main__":
    sys.exit(main())
