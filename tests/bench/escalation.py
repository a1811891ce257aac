"""The escalation sweep under load: what a sweep costs, and how late steps run.

    python -m tests.bench.escalation [--incidents 5000] [--spread 60] [--duration 60]
                                     [--phases 5:1 5:2 1:1]

Each phase gets a throwaway database holding 50 users, one weekly schedule rotating
through them, and a 3-level policy (the schedule's on-call, then a user and a Slack
channel, then a Slack channel; waits 5s/5s/5s, repeat 2: 9 steps per incident). The
users, schedule and policy are written with the functions behind `PUT /api/v1/users`,
`/schedules` and `/escalation-policies`. Then --incidents open, triggered P0 incidents
with the policy frozen on them as `engine.freeze` does, their first deadlines spread
evenly over --spread seconds from the moment the sweepers are ready; every step re-arms
the next 5 s after it ran, so due steps arrive continuously and pile up as the ladders
overlap: up to 9 x incidents / spread steps a second (750/s by default) once every rung
is in flight, more than one sweeper process manages on a 2-core machine.

The sweepers run as the embedded worker does: `run_due(factory)` with the real clock,
then sleep the sweep interval (measured from the end of the call), or not at all when
the call stopped at its time budget with more due, in 1 or 2 processes at once
(spawned; they share the due incidents through `FOR UPDATE SKIP LOCKED`). A
phase ends when no incident has a deadline left, or after --duration seconds. Figures:
wall time per `run_due` call (p50/p99/max) and steps per call, steps per second
(overall, and per second of sweeping), the delay from each step's deadline to its run
(`Sweep.delays`) against the aim "p99 under the sweep interval + 2 s", and whether any
step ran twice: ESCALATED timeline entries per (incident, level, round).

It prints figures and whether targets were met; it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg

from tests.bench.service import throwaway_database

USERS = 50
LEVEL_WAIT = "5s"
REPEAT = 2
LEVELS = 3
STEPS_PER_INCIDENT = LEVELS * (REPEAT + 1)
AIM_BEYOND_INTERVAL = 2.0  # seconds: p99 delay under the sweep interval plus this
START_LEAD = 1.0  # seconds from setting the deadlines to the first one
FAR = timedelta(days=1)  # deadlines while the sweepers start
# (sweep interval, sweeper processes): the default 5 s with one and two sweepers, and 1 s.
PHASES: tuple[tuple[float, int], ...] = ((5.0, 1), (5.0, 2), (1.0, 1))
DURATION = 60.0


def documents() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The users, schedules and escalation documents."""
    users = []
    for n in range(USERS):
        user: dict[str, Any] = {
            "name": f"user-{n:02d}",
            "phone": f"+1555100{n:04d}",
            "slack_user_id": f"U{n:08d}",
            "email": f"user-{n:02d}@example.com",
        }
        if n % 2:  # half of them have personal rules: Slack now, a call after a minute
            user["notification_rules"] = [
                {"channel": "slack", "after": "0m"},
                {"channel": "voice", "after": "1m"},
            ]
        users.append(user)
    schedules = {
        "schedules": [
            {
                "name": "primary",
                "time_zone": "Europe/Berlin",
                "team": "platform",
                "layers": [
                    {
                        "users": [u["name"] for u in users],
                        "rotation": "1w",
                        "handoff": "2026-01-05T09:00:00",
                    }
                ],
            }
        ]
    }
    policy = {
        "name": "bench",
        "repeat": REPEAT,
        "levels": [
            {"wait": LEVEL_WAIT, "targets": [{"schedule": "primary"}]},
            {"wait": LEVEL_WAIT, "targets": [{"user": "user-00"}, {"slack_channel": "#ops"}]},
            {"wait": LEVEL_WAIT, "targets": [{"slack_channel": "#escalations"}]},
        ],
        "fallback": [{"user": "user-01"}],
    }
    return {"users": users}, schedules, {"policies": [policy]}


def _sa(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://")


def prepare(url: str, incidents: int) -> None:
    """Migrate; store the documents and `incidents` escalating incidents (due far ahead)."""
    from incidents.db import create_db_engine, make_session_factory, utcnow
    from incidents.escalation.engine import freeze
    from incidents.escalation.policy import EscalationDocument
    from incidents.escalation.store import check_references, write_policies
    from incidents.migrate import upgrade
    from incidents.models import Incident
    from incidents.oncall.documents import parse_schedules, parse_users
    from incidents.oncall.store import replace_schedules, replace_users

    upgrade(_sa(url))
    engine = create_db_engine(_sa(url))
    sessions = make_session_factory(engine)
    users, schedules, policies = documents()
    with sessions.begin() as session:
        replace_users(session, parse_users(users))
        replace_schedules(session, parse_schedules(schedules))
    with sessions.begin() as session:
        document = EscalationDocument.model_validate(policies)
        check_references(session, document)
        write_policies(session, document)
    [policy] = document.policies
    now = utcnow()
    for start in range(0, incidents, 1000):
        with sessions.begin() as session:
            batch = []
            for n in range(start, min(start + 1000, incidents)):
                service = f"svc-{n % 200:03d}"
                incident = Incident(
                    severity="P0",
                    title=f"{service} is down ({n})",
                    opened_at=now,
                    updated_at=now,
                    first_alert_at=now,
                    last_alert_at=now,
                    services=[service],
                    root_cause_candidates=[service],
                    paged_severity="P0",
                    paged_at=now,
                )
                freeze(incident, policy, "critical", now + FAR)
                batch.append(incident)
            session.add_all(batch)
    engine.dispose()


def _sweeper(url: str, interval: float, ready: Any, stop: Any, out: Any) -> None:
    """One process sweeping as the embedded worker does, until `stop` is set."""
    from incidents.db import create_db_engine, make_session_factory
    from incidents.escalation.engine import run_due

    engine = create_db_engine(_sa(url))
    factory = make_session_factory(engine)
    run_due(factory)  # connect and import everything before the clock starts
    calls: list[tuple[float, float, int]] = []  # (started, seconds, steps)
    delays: list[float] = []
    ready.release()
    while not stop.is_set():
        started = time.time()
        done = run_due(factory)
        calls.append((started, time.time() - started, done.steps))
        delays += done.delays or []
        stop.wait(0 if done.more else interval)
    engine.dispose()
    out.put((calls, delays))


def _arm(url: str, incidents: int, spread: float) -> float:
    """Deadlines from START_LEAD s on, evenly over `spread` s; return the first's epoch."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "UPDATE incidents SET escalation_due_at = now() + make_interval(secs => "
            "%s + (id - (SELECT min(id) FROM incidents)) * %s) "
            "RETURNING extract(epoch FROM now())",
            (START_LEAD, spread / max(incidents - 1, 1)),
        ).fetchone()
    return float(row[0] if row else time.time()) + START_LEAD


def _waiting(url: str, late: float) -> tuple[int, int]:
    """(incidents still escalating, those whose step is more than `late` s overdue)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE escalation_due_at < now() - "
            "make_interval(secs => %s)) FROM incidents WHERE escalation_due_at IS NOT NULL",
            (late,),
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _timeline(url: str) -> tuple[int, int, int]:
    """(ESCALATED entries, (incident, level, round) with more than one, the most of one)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n), 0), count(*) FILTER (WHERE n > 1), coalesce(max(n), 0) "
            "FROM (SELECT count(*) AS n FROM timeline WHERE kind = 'escalated' "
            "GROUP BY incident_id, data->>'level', data->>'round') AS per_step"
        ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


@dataclass
class Phase:
    """One run: a sweep interval, a number of sweeper processes, and what they did."""

    interval: float
    processes: int
    incidents: int
    spread: float
    calls: list[tuple[float, float, int]] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    first_due: float = 0.0
    left: int = 0  # incidents still with a deadline when the phase ended
    overdue: int = 0  # of those, steps already later than the aim: misses not in `delays`
    entries: int = 0
    doubled: int = 0
    most: int = 0
    lost: int = 0  # sweepers that returned nothing


def phase(interval: float, processes: int, incidents: int, spread: float, duration: float) -> Phase:
    """Store the incidents, start the sweepers, arm the deadlines, wait, count."""
    result = Phase(interval, processes, incidents, spread)
    context = multiprocessing.get_context("spawn")
    with throwaway_database(f"escalation_{processes}p_{interval:g}s".replace(".", "_")) as url:
        prepare(url, incidents)
        ready, stop, out = context.Semaphore(0), context.Event(), context.Queue()
        procs = [
            context.Process(target=_sweeper, args=(url, interval, ready, stop, out))
            for _ in range(processes)
        ]
        for proc in procs:
            proc.start()
        try:
            for _ in procs:
                if not ready.acquire(timeout=60):
                    break
            result.first_due = _arm(url, incidents, spread)
            deadline = time.monotonic() + duration
            time.sleep(START_LEAD)
            while time.monotonic() < deadline:
                time.sleep(0.5)
                result.left, result.overdue = _waiting(url, interval + AIM_BEYOND_INTERVAL)
                if result.left == 0:
                    break
        finally:
            stop.set()
            for _ in procs:
                try:
                    calls, delays = out.get(timeout=60)
                except queue.Empty:  # a sweeper that died reports nothing
                    result.lost += 1
                    continue
                result.calls += calls
                result.delays += delays
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
        result.entries, result.doubled, result.most = _timeline(url)
    result.calls.sort()
    return result


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile by nearest rank (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def lines(p: Phase) -> list[str]:
    """One phase, printed."""
    busy = [c for c in p.calls if c[2]]
    seconds = [c[1] for c in busy]
    steps = sum(c[2] for c in p.calls)
    span = max((c[0] + c[1] for c in busy), default=p.first_due) - p.first_due
    working = sum(seconds) / p.processes
    plural = "es" if p.processes > 1 else ""
    out = [
        f"{p.processes} process{plural}, sweep every {p.interval:g} s: {steps:,} steps "
        f"of {p.incidents * STEPS_PER_INCIDENT:,} in {span:.0f} s "
        f"({steps / span if span > 0 else 0:,.0f}/s; "
        f"{steps / working if working else 0:,.0f}/s while the sweepers worked)"
        + (
            f"; stopped with {p.left:,} incidents still escalating, {p.overdue:,} of them "
            f"more than {p.interval + AIM_BEYOND_INTERVAL:g} s overdue"
            if p.left
            else ""
        ),
        f"  run_due calls that stepped: {len(busy)} of {len(p.calls)}; wall time p50 "
        f"{percentile(seconds, 0.5) * 1000:.0f} ms, p99 {percentile(seconds, 0.99) * 1000:.0f}"
        f" ms, max {max(seconds, default=0) * 1000:.0f} ms; steps per call p50 "
        f"{percentile([c[2] for c in busy], 0.5):.0f}, max {max((c[2] for c in busy), default=0)}"
        f"; per step {sum(seconds) / steps * 1000 if steps else 0:.2f} ms",
    ]
    p99 = percentile(p.delays, 0.99)
    aim = p.interval + AIM_BEYOND_INTERVAL
    out.append(
        f"  deadline to step: p50 {percentile(p.delays, 0.5):.2f} s, p99 {p99:.2f} s, max "
        f"{max(p.delays, default=0):.2f} s; aim p99 < {aim:g} s (interval + "
        f"{AIM_BEYOND_INTERVAL:g} s): {_met(p99 < aim and not p.overdue)}"
    )
    out.append(
        f"  ESCALATED timeline entries: {p.entries:,} (steps reported {steps:,}); steps that "
        f"ran twice: {p.doubled}"
        + (f" (one ran {p.most} times)" if p.doubled else "")
        + f"; no step twice: {_met(p.doubled == 0 and p.entries == steps)}"
    )
    if p.lost:
        out.append(f"  ! {p.lost} sweeper(s) reported nothing")
    return out


def run(
    phases: Sequence[tuple[float, int]] = PHASES,
    incidents: int = 5000,
    spread: float = 60.0,
    duration: float = DURATION,
) -> Iterator[str]:
    """Every (interval, processes) phase; yields the printed lines as each finishes."""
    peak = STEPS_PER_INCIDENT * incidents / spread
    yield (
        f"{incidents:,} P0 incidents, first deadlines over {spread:g} s, a 3-level policy "
        f"(waits {LEVEL_WAIT}, repeat {REPEAT}: {STEPS_PER_INCIDENT} steps each), "
        f"{USERS} users on one weekly schedule; at most {peak:,.0f} "
        f"steps/s due; a phase ends when done or after "
        f"{duration:g} s (a run_due call in flight then finishes)"
    )
    for interval, count in phases:
        yield from lines(phase(interval, count, incidents, spread, duration))


def _phase_arg(text: str) -> tuple[float, int]:
    interval, _, count = text.partition(":")
    try:
        return min(max(float(interval), 0.1), 60.0), min(max(int(count or 1), 1), 8)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected INTERVAL:PROCESSES") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Print the escalation figures."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.escalation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--incidents", type=int, default=5000, help="escalating incidents")
    parser.add_argument("--spread", type=float, default=60.0, help="first deadlines over (s)")
    parser.add_argument("--duration", type=float, default=DURATION, help="bound per phase (s)")
    parser.add_argument(
        "--phases",
        type=_phase_arg,
        nargs="+",
        default=list(PHASES),
        metavar="INTERVAL:PROCESSES",
        help="sweep interval (s) and sweeper processes of each phase (default 5:1 5:2 1:1)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    for line in run(
        args.phases,
        min(max(args.incidents, 1), 100_000),
        min(max(args.spread, 1.0), 600.0),
        min(max(args.duration, 5.0), 600.0),
    ):
        print(line, flush=True)
    print(f"escalation bench finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
