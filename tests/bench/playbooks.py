"""Playbook runs: how soon a new incident's first step reaches its target, and how many
steps one worker runs a second.

    python -m tests.bench.playbooks [--probes 40] [--runs 200] [--steps 10]

latency  Each phase gets a throwaway database and a playbook folder with one playbook:
         on `incident_opened` of `ProbeDown`, POST to a local recording server (this
         process; it stamps each request's arrival). Every 0.5 s a P0 probe on a service of
         its own is posted to `incidents serve`. Two shapes: embedded (no broker: the
         pipeline and the playbook threads run in the server) and production (Redis
         broker, `incidents worker`, `incidents playbook-worker`, beat). Figures: from the
         commit that opened the incident (the probe's pipeline job finishing) to the first
         step's request arriving, and from the webhook being written to that request.
steps    --runs runs of a playbook of --steps `http.request` steps (GET, answered at once
         by the recording server) written to a throwaway database up front, then run by
         one executor thread in this process, and by four: steps a second, and the
         time per step split between the action and the record (claim, step start and
         outcome commits, timeline entries).

It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson
import psycopg

from tests.bench.notify_traffic import Client, Sent, alert, body, percentile
from tests.bench.service import Server, Worker, throwaway_database
from tests.playbooks.servers import RecordingServer

REDIS_URL = "redis://127.0.0.1:6379/6"
PROBE_SPACING = 0.5
PLAYBOOK = """
id: bench-latency
description: the first step reaches the recording server
triggers: [{{event: incident_opened, matchers: ['alertname="ProbeDown"']}}]
policy: {{max_runs_per_incident: 1, max_runs_per_hour: 10000}}
steps:
  - name: first
    action: http.request
    params: {{method: POST, url: "{url}/probe/{{{{ alert.labels.service }}}}", body: {{x: 1}}}}
"""


@contextmanager
def _folder(url: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="incidents-bench-playbooks-") as where:
        Path(where, "latency.yaml").write_text(PLAYBOOK.format(url=url))
        yield where


def _flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def _opened_at(url: str, sends: dict[str, Sent]) -> dict[str, float]:
    """Per probe, when the pipeline job that opened its incident committed (epoch s)."""
    out: dict[str, float] = {}
    with psycopg.connect(url) as conn:
        for name, sent in sends.items():
            fingerprint = orjson.loads(sent.answer)["fingerprints"][0]
            row = conn.execute(
                "SELECT max(finished_at) FROM pipeline_jobs WHERE fingerprints @> %s::jsonb",
                [orjson.dumps([fingerprint]).decode()],
            ).fetchone()
            if row is not None and row[0] is not None:
                out[name] = row[0].timestamp()
    return out


def latency(shape: str, probes: int) -> list[str]:
    """Probe incidents to their first step's request, in one shape."""
    offset = time.time() - time.monotonic()
    sends: dict[str, Sent] = {}
    with RecordingServer() as target, _folder(target.url) as folder:
        env = {
            "INCIDENTS_PLAYBOOKS__FOLDER": folder,
            "INCIDENTS_CORRELATION__OPEN_HOLD_SECONDS": "0",
            "INCIDENTS_CORRELATION__MAX_NEW_INCIDENTS_PER_MINUTE": "0",
            "INCIDENTS_WARROOM__ENABLED": "false",
        }
        broker = REDIS_URL if shape == "production" else ""
        with throwaway_database(f"playbooks_{shape}") as url:
            _flush_redis()
            server = Server(url, "WARNING", broker, env)
            others: list[Worker] = []
            try:
                server.start()
                if broker:
                    with tempfile.TemporaryDirectory(prefix="incidents-bench-") as where:
                        for args in (
                            ("worker", "--concurrency", "2"),
                            ("playbook-worker", "--concurrency", "4"),
                            ("beat",),
                        ):
                            others.append(Worker(url, broker, env, args, cwd=where))
                            others[-1].start()
                        sends = _probe(server.port, probes, target)
                else:
                    sends = _probe(server.port, probes, target)
            finally:
                for worker in reversed(others):
                    worker.stop()
                server.close()
                _flush_redis()
            opened = _opened_at(url, sends)
        arrived = {
            r.path.rsplit("/", 1)[-1]: r.at + offset
            for r in target.requests
            if r.path.startswith("/probe/")
        }
    from_open = [arrived[n] - opened[n] for n in sends if n in arrived and n in opened]
    from_hook = [arrived[n] - s.at for n, s in sends.items() if n in arrived]
    return [
        f"{shape}: {len(from_open)} of {probes} probes reached the target",
        f"  incident opened (job committed) -> first step's request: p50 "
        f"{percentile(from_open, 0.5) * 1000:.0f} ms, p99 {percentile(from_open, 0.99) * 1000:.0f}"
        f" ms, max {max(from_open, default=0) * 1000:.0f} ms",
        f"  webhook written -> first step's request: p50 {percentile(from_hook, 0.5) * 1000:.0f}"
        f" ms, p99 {percentile(from_hook, 0.99) * 1000:.0f} ms",
    ]


def _probe(port: int, probes: int, target: RecordingServer) -> dict[str, Sent]:
    client = Client(port)
    sends: dict[str, Sent] = {}
    try:
        # One probe all the way first: the workers are up and consuming.
        client.post(body([alert("ProbeDown", "warm-up", "critical")]))
        deadline = time.monotonic() + 90
        while not target.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        for n in range(probes):
            time.sleep(max(0.0, started + n * PROBE_SPACING - time.monotonic()))
            name = f"probe-{n:03d}"
            sends[name] = client.post(body([alert("ProbeDown", name, "critical")]))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(1 for r in target.requests if r.path.startswith("/probe/probe-")) >= probes:
                break
            time.sleep(0.1)
    finally:
        client.close()
    return sends


def steps_per_second(runs: int, steps: int, threads: int) -> list[str]:
    """One executor with `threads` threads over `runs` prepared runs."""
    from incidents.db import create_db_engine, make_session_factory, session_scope
    from incidents.migrate import upgrade
    from incidents.playbooks import manual
    from incidents.playbooks.catalog import compile_loaded
    from incidents.playbooks.document import Playbook
    from incidents.playbooks.execute import Executor
    from tests.conftest import make_settings
    from tests.remediation.incident_rows import make_incidents

    with RecordingServer() as target, throwaway_database(f"playbook_steps_{threads}") as url:
        upgrade(url)
        engine = create_db_engine(url, pool_size=threads + 4)
        sessions = make_session_factory(engine)
        settings = make_settings(url)
        playbook = Playbook.model_validate(
            {
                "id": "bench-steps",
                "description": "many quick steps",
                "policy": {"max_runs_per_incident": 100, "max_runs_per_hour": 10_000},
                "steps": [
                    {
                        "name": f"s{i}",
                        "action": "http.request",
                        "params": {"method": "GET", "url": f"{target.url}/step/{i}"},
                    }
                    for i in range(steps)
                ],
            }
        )
        loaded = compile_loaded(playbook, "bench")
        incident_ids = make_incidents(sessions, runs)
        with session_scope(sessions) as session:
            run_ids = [
                manual.start(session, loaded, i, dry_run=False, actor="bench") for i in incident_ids
            ]
        executor = Executor(sessions, settings)
        todo = list(run_ids)
        import threading

        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    run_id = todo.pop()
                executor.run(run_id)

        started = time.perf_counter()
        workers = [threading.Thread(target=work) for _ in range(threads - 1)]
        for worker in workers:
            worker.start()
        work()  # this thread is one of them
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - started
        total = runs * steps
        with psycopg.connect(url) as conn:
            done = conn.execute(
                "SELECT count(*) FROM playbook_steps WHERE status = 'succeeded'"
            ).fetchone()
        engine.dispose()
        requests = len(target.requests)
    return [
        f"{threads} thread(s): {runs} runs x {steps} steps in {seconds:.1f} s: "
        f"{total / seconds:,.0f} steps/s ({seconds / total * 1000:.1f} ms per step); "
        f"{done[0] if done else 0} steps recorded succeeded, {requests} requests received"
    ]


def run(probes: int = 40, runs: int = 200, steps: int = 10) -> list[str]:
    """Every phase's lines."""
    out: list[str] = []
    for shape in ("embedded", "production"):
        out += latency(shape, probes)
    for threads in (1, 4):
        out += steps_per_second(runs, steps, threads)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    for line in run(args.probes, args.runs, args.steps):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
