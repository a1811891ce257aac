"""Notifications in the production shape: how soon a new P0 reaches Slack under load, and
what a storm sends to Slack.

    python -m tests.bench.notify [--probes 60] [--background-rate 200]
                                 [--probe-channels 4] [--storm-channels 4]

Each phase gets a throwaway database, Redis database 5 (flushed before and after), a fake
Slack in this process (tests/notify/fake_slack.py, which stamps each request's arrival)
and the production shape: `incidents serve` on the Redis broker with a Celery worker,
whose threads send the notifications today, and beat (tests/bench/notify_shape.py).
Routing comes from a config file written for the run. The storm cap
(correlation.max_new_incidents_per_minute, 30 by default) is 0, i.e. off, so every
incident pages on its own. The opening hold (correlation.open_hold_seconds, 15 s by
default) applies to every severity, P0 included: the latency phase runs once with it off
(what the pipeline and the notify worker take) and once with the default (what a P0
page waits with shipped settings; --no-default-hold skips that run); the storm runs with
it off, so every incident pages at once. Before measuring, one P0 goes all the way to
Slack.

latency  background load of --background-rate alerts/s (bodies of 10 `info` alerts on 20
         services, routed to a receiver without targets) and every 0.5 s a P0 on a service
         of its own, routed to one of --probe-channels channels in turn (the service
         spaces posts to one channel 1 s apart, as Slack asks, so two probes a second into
         one channel would measure that queue): the time from the client writing its
         webhook to the fake Slack receiving the first request about it; then where it
         went, from the probe's job in pipeline_jobs (stored, claimed, finished).
storm    10,000 alerts in 60 s: 200 services with 50 P1 alerts each, spread evenly over the
         minute, one body every 0.25 s holding the alerts then due; no service graph, so
         200 incidents, spread over --storm-channels Slack channels. Figures: Slack
         requests by kind, when each incident's first page arrived, the most
         chat.postMessage calls to one channel in any second (Slack: 1/s per channel) and
         chat.update calls in any minute (Slack's Tier 3: about 50/min).

It prints figures and whether targets were met; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from incidents.config import CorrelationSettings
from tests.bench.notify_shape import (
    Steps,
    config_file,
    environment,
    fake_slack,
    probe_steps,
    production,
    still_waiting,
    storm_incidents,
    warm_up,
)
from tests.bench.notify_traffic import (
    PER_BODY,
    STORM_PER_SERVICE,
    STORM_SECONDS,
    STORM_SERVICES,
    Client,
    Pacer,
    Sent,
    SlackTraffic,
    alert,
    background,
    body,
    first_mention,
    percentile,
    slack_traffic,
    storm_schedule,
)
from tests.bench.service import throwaway_database

PROBE_SPACING = 0.5
PROBE = re.compile(r"probe-\d{3}")
LOAD_WARMUP_SECONDS = 3.0
STORM = re.compile(r"storm-\d{3}")
KINDS = ("post", "reply", "update")
SETTLE_SECONDS = 100.0  # after the storm's last body, for Slack's backlog to drain
DEFAULT_HOLD: float = CorrelationSettings.model_fields["open_hold_seconds"].default


@dataclass
class Latency:
    """The latency phase's figures."""

    probes: int
    channels: int
    open_hold: float
    seconds: dict[str, float]  # probe -> webhook to its first Slack request
    steps: Steps
    background_rate: float
    background_rejected: int
    background_error: str | None


def latency(probes: int, rate: float, channels: int, open_hold: float = 0.0) -> Latency:
    """Each probe P0's webhook to its first Slack request, under background load; the
    probes take the `channels` Slack channels in turn."""
    config = config_file(channels, 0)
    fake, _ = fake_slack(channels, 0)
    sends: dict[str, Sent] = {}
    arrivals: dict[str, float] = {}
    try:
        with fake, throwaway_database("notify_latency") as url:
            with production(url, environment(fake, config, open_hold)) as shape:
                client = Client(shape.server.port)
                load = Pacer(shape.server.port, background(rate), "background")
                try:
                    warm_up(shape, fake, client)
                    load.start()
                    time.sleep(LOAD_WARMUP_SECONDS)
                    started = time.monotonic()
                    for n in range(probes):
                        time.sleep(max(0.0, started + n * PROBE_SPACING - time.monotonic()))
                        name = f"probe-{n:03d}"
                        lane = str(n % channels)
                        probe = alert("ProbeDown", name, "critical", lane=lane)
                        sends[name] = client.post(body([probe]))
                    deadline = time.monotonic() + 15 + open_hold
                    while len(arrivals) < probes and time.monotonic() < deadline:
                        time.sleep(0.1)
                        found = first_mention(fake.requests, PROBE)
                        arrivals = {name: r.at for name, r in found.items()}
                finally:
                    load.stop()
                    client.close()
            steps = probe_steps(url, sends, arrivals)
    finally:
        os.unlink(config)
    first_probe = min(s.at for s in sends.values())
    timed = [s for s in load.sent if s.at >= first_probe]
    span = timed[-1].at - timed[0].at if len(timed) > 1 else 0.0
    return Latency(
        probes=probes,
        channels=channels,
        open_hold=open_hold,
        seconds={
            name: arrivals[name] - sent.at for name, sent in sends.items() if name in arrivals
        },
        steps=steps,
        background_rate=(len(timed) - 1) * PER_BODY / span if span else 0.0,
        background_rejected=load.rejected(),
        background_error=load.error,
    )


@dataclass
class Storm:
    """The storm phase's figures."""

    channels: int
    sent: list[Sent]
    rejected: int
    late: float  # the sender's worst lateness, seconds
    error: str | None  # why the sender stopped early
    slack: SlackTraffic
    page_delays: list[float]  # per incident: its first alert's body to its first page
    incidents: int
    settled: float | None  # seconds from the last body until nothing waited, None if never
    waiting: int | None


def storm(channels: int) -> Storm:
    """10,000 alerts in a minute over 200 services; what Slack received."""
    config = config_file(1, channels)
    schedule, first_body = storm_schedule(channels)
    fake, ids = fake_slack(1, channels)
    try:
        with fake, throwaway_database("notify_storm") as url:
            with production(url, environment(fake, config)) as shape:
                client = Client(shape.server.port)
                try:
                    warm_up(shape, fake, client)
                finally:
                    client.close()
                pacer = Pacer(shape.server.port, schedule, "storm")
                try:
                    pacer.start()
                    pacer.join(timeout=STORM_SECONDS + 120)
                finally:
                    pacer.stop()
                deadline = time.monotonic() + SETTLE_SECONDS
                settled: float | None = None
                waiting: int | None = None
                while time.monotonic() < deadline:
                    waiting = still_waiting(url)
                    if waiting == 0 and pacer.sent:
                        settled = time.time() - pacer.sent[-1].at
                        break
                    time.sleep(0.5)
                traffic = slack_traffic(fake.requests, ids, STORM)
            incidents = storm_incidents(url)
    finally:
        os.unlink(config)
    delays = [
        at - pacer.sent[first_body[name]].at
        for name, at in traffic.first_page.items()
        if first_body[name] < len(pacer.sent)
    ]
    return Storm(
        channels,
        pacer.sent,
        pacer.rejected(),
        pacer.max_late,
        pacer.error,
        traffic,
        delays,
        incidents,
        settled,
        waiting,
    )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _steps_text(steps: dict[str, float]) -> str:
    return ", ".join(f"{step} {seconds * 1000:.0f} ms" for step, seconds in steps.items())


def latency_lines(f: Latency) -> list[str]:
    """The latency phase, printed."""
    ms = [s * 1000 for s in f.seconds.values()]
    p50, p99 = percentile(ms, 0.5), percentile(ms, 0.99)
    missing = f.probes - len(ms)
    lines = [
        f"P0 webhook to its first Slack request, {f.probes} probes {PROBE_SPACING:g} s apart "
        f"taking {f.channels} Slack channel(s) in turn, under {f.background_rate:,.0f} alerts/s "
        f"of background, opening hold {f.open_hold:g} s: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"max {max(ms, default=0):.0f} ms" + (f", {missing} never arrived" if missing else ""),
        f"  target p50 < 100 ms and p99 < 500 ms: {_met(p50 < 100 and p99 < 500 and not missing)}",
    ]
    if f.steps:
        names = list(next(iter(f.steps.values())))
        medians = {n: statistics.median(s[n] for s in f.steps.values()) for n in names}
        lines.append(f"  median of each step: {_steps_text(medians)}")
        slowest = max(f.steps, key=lambda name: f.seconds[name])
        lines.append(f"  the slowest probe's steps: {_steps_text(f.steps[slowest])}")
    if f.background_rejected:
        lines.append(f"  ! {f.background_rejected} background bodies not accepted")
    if f.background_error:
        lines.append(f"  ! the background sender stopped early: {f.background_error}")
    if f.channels * PROBE_SPACING < 1:
        lines.append(
            "  note: more than one probe a second reaches a channel, and the service spaces "
            "posts to a channel 1 s apart (Slack's limit): these figures include that queue"
        )
    if f.open_hold:
        lines.append(
            f"  note: this is the shipped default: the opening hold "
            f"(correlation.open_hold_seconds = {f.open_hold:g}) applies to P0s too and adds "
            "its length to every first page, by design (a merge within it folds the page away)"
        )
    else:
        lines.append(
            "  note: the opening hold is off here; by default "
            f"(correlation.open_hold_seconds = {DEFAULT_HOLD:g}) it applies to P0s too and "
            "adds its length to every first page"
        )
    return lines


def storm_lines(f: Storm) -> list[str]:
    """The storm phase, printed."""
    alerts = STORM_SERVICES * STORM_PER_SERVICE
    start = f.sent[0].at if f.sent else 0.0
    span = f.sent[-1].at - start if f.sent else 0.0
    s = f.slack
    pages = sorted(s.first_page.values())
    lines = [
        f"storm: {alerts:,} alerts in {STORM_SECONDS:.0f} s ({len(f.sent)} bodies sent over "
        f"{span:.1f} s, {f.rejected} not accepted, at worst {f.late:.2f} s late), "
        f"{STORM_SERVICES} services, no graph, "
        f"{f.channels} Slack channel(s), opening hold 0 s, storm cap off: "
        f"{f.incidents} incidents",
        f"  Slack requests: {s.by_kind['post']} chat.postMessage top-level, "
        f"{s.by_kind['reply']} thread replies, {s.by_kind['update']} chat.update"
        + "".join(f", {n} {k}" for k, n in s.by_kind.items() if k not in KINDS),
    ]
    if pages:
        lines.append(
            f"  first pages: {len(pages)} of {STORM_SERVICES} incidents; the last arrived "
            f"{pages[-1] - start:.1f} s after the storm's start (half of them by "
            f"{pages[len(pages) // 2] - start:.1f} s); per incident, its first alert to its "
            f"first page: p50 {percentile(f.page_delays, 0.5):.1f} s, max "
            f"{max(f.page_delays, default=0):.1f} s"
        )
    if f.error:
        lines.append(f"  ! the storm's sender stopped early: {f.error}")
    doubled = sum(1 for n in s.top_level.values() if n > 1)
    lines.append(f"  incidents with more than one top-level message: {doubled}")
    busiest = max(s.posts_per_second.values(), default=0)
    gaps = [g for g in s.post_gap.values() if g is not None]
    over = sum(1 for n in s.posts_per_second.values() if n > 1)
    lines.append(
        f"  chat.postMessage per channel: at most {busiest} in any 1 s, shortest gap "
        f"{min(gaps, default=0) * 1000:.0f} ms; limit 1/s per channel: "
        + (f"exceeded in {over} of {f.channels} channel(s)" if over else "kept")
    )
    lines.append(
        f"  chat.update: at most {s.updates_per_minute} in any 60 s over all channels; "
        f"Slack Tier 3 about 50/min: {_met(s.updates_per_minute <= 50)}"
    )
    if f.settled is not None:
        lines.append(f"  nothing left to send {f.settled:.1f} s after the storm's last body")
    else:
        lines.append(
            f"  still {f.waiting if f.waiting is not None else '?'} jobs and Slack "
            f"notifications waiting {SETTLE_SECONDS:.0f} s after the storm's last body"
        )
    lines.append(
        "  note: with the default storm cap (30 new incidents a minute) all but 30 of these "
        "incidents would share one 'alert storm' page instead of paging each"
    )
    return lines


def run(
    probes: int = 60,
    rate: float = 200.0,
    probe_channels: int = 4,
    storm_channels: int = 4,
    *,
    with_latency: bool = True,
    with_default_hold: bool = True,
    with_storm: bool = True,
) -> Iterator[str]:
    """The phases; yields the printed lines as each phase finishes."""
    if with_latency:
        yield from latency_lines(latency(probes, rate, probe_channels))
        if with_default_hold and DEFAULT_HOLD:
            yield from latency_lines(latency(probes, rate, probe_channels, DEFAULT_HOLD))
    if with_storm:
        yield from storm_lines(storm(storm_channels))


def main(argv: Sequence[str] | None = None) -> int:
    """Print the notification figures."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.notify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--probes", type=int, default=60, help="P0 probes, 0.5 s apart")
    parser.add_argument("--background-rate", type=float, default=200.0, help="alerts/s")
    parser.add_argument("--probe-channels", type=int, default=4, help="Slack channels")
    parser.add_argument("--storm-channels", type=int, default=4, help="Slack channels")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency phase")
    parser.add_argument(
        "--no-default-hold",
        action="store_true",
        help="skip the latency run with the default opening hold",
    )
    parser.add_argument("--no-storm", action="store_true", help="skip the storm")
    args = parser.parse_args(argv)
    started = time.monotonic()
    for line in run(
        min(max(args.probes, 1), 999),
        min(max(args.background_rate, 10.0), 5_000.0),
        min(max(args.probe_channels, 1), 16),
        min(max(args.storm_channels, 1), STORM_SERVICES),
        with_latency=not args.no_latency,
        with_default_hold=not args.no_default_hold,
        with_storm=not args.no_storm,
    ):
        print(line, flush=True)
    print(f"notify bench finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
