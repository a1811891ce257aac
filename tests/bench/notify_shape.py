"""The system under test of the notify benchmark (tests/bench/notify.py): the production
shape's processes, the config file with the routing tree, the fake Slack, and the few
timestamps and counts read from the database.

Everything is driven from outside: command lines, environment, HTTP.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import psycopg

from tests.bench.notify_traffic import Client, Sent, alert, body
from tests.bench.service import Server, Worker
from tests.notify.fake_slack import FakeSlack

# Beside `incidents serve`, the production shape runs these `incidents` commands: the
# pipeline's worker, the notify worker (the notify queue) and beat.
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("worker", "--concurrency", "2"),
    ("notify-worker",),
    ("beat",),
)

# A Redis database of the benchmark's own (tests/bench/scenarios.py uses 14).
REDIS_URL = "redis://127.0.0.1:6379/5"
WARM_SECONDS = 90.0  # for the first P0 to reach Slack (the worker starting)
Steps = dict[str, dict[str, float]]  # probe -> step -> seconds


def config_file(probe_channels: int, storm_channels: int) -> str:
    """A config file whose routing sends a P0 with label lane="N" to #bench-probe-N, a P1
    with lane="N" to #bench-storm-N, and the rest to a receiver without targets. The
    caller removes it."""
    lanes = [("P0", "probe", n) for n in range(probe_channels)]
    lanes += [("P1", "storm", n) for n in range(storm_channels)]
    lines = ["routing:", "  receivers:", "    - name: quiet"]
    for _, kind, n in lanes:
        lines += [f"    - name: {kind}-{n}", f'      slack: ["#{channel_name(kind, n)}"]']
    lines += ["  route:", "    receiver: quiet", "    routes:"]
    for severity, kind, n in lanes:
        lines.append(f"      - matchers: ['severity=\"{severity}\"', 'lane=\"{n}\"']")
        lines.append(f"        receiver: {kind}-{n}")
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - removed by the caller
        "w", prefix="incidents-bench-notify-", suffix=".yaml", delete=False
    )
    with handle:
        handle.write("\n".join(lines) + "\n")
    return handle.name


def channel_name(kind: str, lane: int) -> str:
    """The Slack channel (without `#`) of the probes' or the storm's lane N."""
    return f"bench-{kind}-{lane}"


def fake_slack(probe_channels: int, storm_channels: int) -> tuple[FakeSlack, dict[str, str]]:
    """A fake Slack (not started) that knows the channels; and the storm's, name to id."""
    fake = FakeSlack()
    for n in range(probe_channels):
        fake.add_channel(channel_name("probe", n))
    storm = {channel_name("storm", n): "" for n in range(storm_channels)}
    for name in storm:
        storm[name] = fake.add_channel(name)
    return fake, storm


def environment(fake: FakeSlack, config: str, open_hold: float = 0.0) -> dict[str, str]:
    """The settings every process gets: the config, Slack, the opening hold (off unless
    given), no storm cap."""
    return {
        "INCIDENTS_CONFIG": config,
        "INCIDENTS_SLACK_BOT_TOKEN": fake.token,
        "INCIDENTS_SLACK_API_URL": fake.api_url,
        "INCIDENTS_CORRELATION__OPEN_HOLD_SECONDS": f"{open_hold:g}",
        # The probes are P0s: without this each would also open a Slack war room.
        "INCIDENTS_WARROOM__ENABLED": "false",
        "INCIDENTS_CORRELATION__MAX_NEW_INCIDENTS_PER_MINUTE": "0",
    }


def _flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


@dataclass
class Shape:
    """The running processes of the production shape."""

    server: Server
    others: list[Worker]

    def tails(self) -> str:
        """The end of every process's log, for an error message."""
        parts = [f"--- serve\n{self.server.tail()}"]
        parts += [f"--- {' '.join(p.args)}\n{p.tail()}" for p in self.others]
        return "\n".join(parts)


@contextlib.contextmanager
def production(url: str, env: dict[str, str]) -> Iterator[Shape]:
    """`incidents serve` on the Redis broker and COMMANDS beside it; all stopped after,
    whatever happens, and the Redis database flushed before and after."""
    _flush_redis()
    # Beat writes its schedule file where it runs: not into the checkout.
    with tempfile.TemporaryDirectory(prefix="incidents-bench-") as where:
        shape = Shape(
            Server(url, "WARNING", REDIS_URL, env),
            [Worker(url, REDIS_URL, env, args, cwd=where) for args in COMMANDS],
        )
        try:
            shape.server.start()
            for process in shape.others:
                process.start()
            yield shape
        finally:
            for process in reversed(shape.others):
                process.stop()
            shape.server.close()
            _flush_redis()


def warm_up(shape: Shape, fake: FakeSlack, client: Client) -> None:
    """One P0 all the way to Slack: the worker consumes and Slack is reachable."""
    sent = client.post(body([alert("WarmUp", "warm-up", "critical", lane="0")]))
    deadline = time.monotonic() + WARM_SECONDS
    while time.monotonic() < deadline:
        if any("warm-up" in str(r.body.get("text", "")) for r in fake.requests):
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"no Slack request for the warm-up P0 (HTTP {sent.status}) within "
        f"{WARM_SECONDS:.0f} s:\n{shape.tails()}"
    )


# What the database says -------------------------------------------------------------


def probe_steps(url: str, sends: dict[str, Sent], arrivals: dict[str, float]) -> Steps:
    """Per probe, the seconds of each step, from its job in pipeline_jobs; {} if unknown."""
    out: Steps = {}
    try:
        with psycopg.connect(url) as conn:
            for name, sent in sends.items():
                fingerprint = orjson.loads(sent.answer)["fingerprints"][0]
                row = conn.execute(
                    "SELECT min(created_at), min(claimed_at), max(finished_at) "
                    "FROM pipeline_jobs WHERE fingerprints @> %s::jsonb",
                    [orjson.dumps([fingerprint]).decode()],
                ).fetchone()
                if row is None or None in row or name not in arrivals:
                    continue
                stored, claimed, done = (t.timestamp() for t in row)
                out[name] = {
                    "webhook to job stored": stored - sent.at,
                    "waiting for a worker": claimed - stored,
                    "pipeline run": done - claimed,
                    "run end to Slack": arrivals[name] - done,
                }
    except (psycopg.Error, KeyError, ValueError):
        return {}
    return out


def still_waiting(url: str) -> int | None:
    """Pipeline jobs and Slack notifications not done yet; None if it cannot tell."""
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pipeline_jobs WHERE status <> 'done') + "
                "(SELECT count(*) FROM notifications WHERE channel = 'slack' "
                "AND status IN ('pending', 'sending'))"
            ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


def storm_incidents(url: str) -> int:
    """Incidents the storm opened (titled "... on storm-NNN")."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM incidents WHERE title LIKE %s", ["% on storm-%"]
        ).fetchone()
    return int(row[0]) if row else 0
