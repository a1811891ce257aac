"""Escalation steps run by a real Celery worker, on PostgreSQL and a Redis of the test's
own, with the worker killed (SIGKILL, every process of it) in the middle of a step and
between two steps.

The real processes: the API, a pipeline worker (`incidents worker`, which runs beat's
escalation sweeps) and beat, with a sweep every second and a ladder of three levels five
seconds apart. For the kill in the middle of a step the test holds a lock on the
timeline table from outside: the worker's sweep takes the due incidents (their rows
locked) and then waits to write its timeline entries; it is killed there. The
supervisor starts the worker again, as in production.

- The killed step committed nothing: every entry of that level was written after the kill.
- Every step ran exactly once: one `escalated` entry and one notification per incident,
  level and round.
- A step due while the worker was down ran within about one sweep of the new worker
  being up.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from incidents.db import create_db_engine, utcnow
from tests.conftest import AUTH
from tests.factories import am_alert, am_payload
from tests.workers.processes import (
    Command,
    PrivateRedis,
    free_port,
    port_open,
    service_env,
    wait_for,
)

INCIDENTS = 8
SWEEP = 1.0  # seconds between beat's escalation sweeps
WAIT = 5.0  # seconds between levels (the shortest a policy may say)
# What a loaded machine may add to one sweep: beat's next tick, the task's hand-over
# through Redis, and the sweep itself.
SLACK = 6.0
CONFIG = """
correlation: {open_hold_seconds: 0, hops: 0, max_new_incidents_per_minute: 0,
              quiet_period_seconds: 0}
notify: {enabled: false}
warroom: {enabled: false}
routing:
  receivers:
    - {name: default, console: [stdout]}
    - {name: critical, console: [stdout], escalation_policy: ladder}
  route:
    receiver: default
    routes: [{matchers: ['severity="P0"'], receiver: critical}]
users:
  - {name: alice, phone: "+15551230001"}
  - {name: bob, phone: "+15551230002"}
  - {name: carol, phone: "+15551230003"}
escalation:
  policies:
    - name: ladder
      levels:
        - {wait: 5s, targets: [{user: alice}]}
        - {wait: 5s, targets: [{user: bob}]}
        - {targets: [{user: carol}]}
"""
PHONES = {1: "+15551230001", 2: "+15551230002", 3: "+15551230003"}


def steps(engine: sa.Engine) -> list[tuple[int, int, int, datetime]]:
    """Every escalation step run: (incident, level, round, when)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT incident_id, (data->>'level')::int, (data->>'round')::int, at "
                "FROM timeline WHERE kind = 'escalated' ORDER BY id"
            )
        ).all()
    return [(int(i), int(level), int(r), at) for i, level, r, at in found]


def at_level(engine: sa.Engine, level: int) -> list[datetime]:
    return [at for _, lvl, _, at in steps(engine) if lvl == level]


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        children = [int(p) for p in path.read_text().split()]
    except FileNotFoundError:
        return []
    return children + [d for child in children for d in descendants(child)]


def kill_worker(supervised: Command) -> list[int]:
    """SIGKILL the Celery worker and its pool processes (as a machine or the kernel's
    OOM killer would); its supervisor stays, and starts it again."""
    pids = descendants(supervised.proc.pid)
    assert pids, "the worker has no processes to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def stuck_writing_timeline(engine: sa.Engine) -> list[int]:
    """Backends of this database waiting for the timeline's lock to write to it."""
    with engine.connect() as conn:
        pids = conn.execute(
            sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO timeline%'"
            )
        ).scalars()
        return [int(p) for p in pids]


def backend_alive(engine: sa.Engine, pid: int) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar_one()
        )


@pytest.mark.postgres
@pytest.mark.redis
def test_a_worker_killed_mid_step_or_between_steps_runs_each_step_once(
    pg_url: str, tmp_path: Path
) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    engine = create_db_engine(pg_url)
    (tmp_path / "config.yaml").write_text(CONFIG)
    env = service_env(pg_url, redis.url, escalation_sweep_seconds=SWEEP)
    env["INCIDENTS_CONFIG"] = str(tmp_path / "config.yaml")
    port = free_port()
    commands: list[Command] = []

    def start(name: str, *args: str) -> Command:
        command = Command(["incidents.cli", *args], env, tmp_path / f"{name}.log", tmp_path)
        commands.append(command)
        return command

    def logs() -> str:
        return "".join(c.output()[-3000:] for c in commands)

    def ready(worker: Command, times: int) -> datetime:
        """When the worker has said it is ready `times` times (once per start)."""
        wait_for(lambda: worker.output().count(" ready.") >= times, 90, f"worker: {logs()}")
        return utcnow()

    try:
        start("api", "serve", "--no-migrate", "--port", str(port))
        worker = start("worker", "worker", "--concurrency", "1")
        start("beat", "beat")
        wait_for(lambda: port_open(port), 60, "the API to listen")
        ready(worker, 1)
        alerts = [
            am_alert({"alertname": "Down", "service": f"svc-{i}", "severity": "critical"})
            for i in range(INCIDENTS)
        ]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as client:
            response = client.post(
                "/api/v1/alerts/alertmanager", content=orjson.dumps(am_payload(alerts))
            )
            assert response.status_code == 200, response.text
        wait_for(lambda: len(at_level(engine, 1)) == INCIDENTS, 90, f"level 1: {logs()}")

        # In the middle of level 2: its sweep holds the incidents' rows and waits to
        # write its timeline entries, behind the test's lock, and is killed there.
        with engine.connect() as holder:
            holder.execute(sa.text("LOCK TABLE timeline IN SHARE MODE"))
            wait_for(lambda: bool(stuck_writing_timeline(engine)), 60, f"a stuck step: {logs()}")
            [backend] = stuck_writing_timeline(engine)
            killed_at = utcnow()
            kill_worker(worker)
            holder.rollback()
        wait_for(lambda: not backend_alive(engine, backend), 30, "the killed step's backend")
        back = ready(worker, 2)
        wait_for(lambda: len(at_level(engine, 2)) == INCIDENTS, 90, f"level 2: {logs()}")
        level_2 = at_level(engine, 2)
        assert min(level_2) > killed_at  # the killed step committed nothing
        assert max(level_2) <= back + timedelta(seconds=SWEEP + SLACK), (back, level_2)

        # Between level 2 and level 3: nothing of the ladder is in flight.
        kill_worker(worker)
        due = max(level_2) + timedelta(seconds=WAIT)
        back = ready(worker, 3)
        wait_for(lambda: len(at_level(engine, 3)) == INCIDENTS, 90, f"level 3: {logs()}")
        level_3 = at_level(engine, 3)
        assert max(level_3) <= max(due, back) + timedelta(seconds=SWEEP + SLACK), (
            due,
            back,
            level_3,
        )
        time.sleep(3 * SWEEP)  # further sweeps find nothing left to do
    finally:
        for command in commands:
            command.stop()
        redis.kill()

    done = steps(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT incident_id, event_key, channel, target FROM notifications "
                "WHERE event_key LIKE 'escalation:%'"
            )
        ).all()
    engine.dispose()
    incidents = {i for i, _, _, _ in done}
    assert len(incidents) == INCIDENTS
    # Each (incident, level, round) exactly once, on the timeline and in the outbox.
    assert sorted((i, level, r) for i, level, r, _ in done) == sorted(
        (i, level, 1) for i in incidents for level in (1, 2, 3)
    )
    assert sorted(tuple(r) for r in rows) == sorted(
        (i, f"escalation:0:0:{level - 1}", "sms", PHONES[level])
        for i in incidents
        for level in (1, 2, 3)
    )
