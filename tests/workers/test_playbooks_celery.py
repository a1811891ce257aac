"""Playbook runs through Celery workers on Redis: a worker killed with SIGKILL mid-run.

The real processes: the API, a pipeline worker, a playbook worker (`incidents
playbook-worker`, the playbooks queue) and beat, on PostgreSQL and a Redis of the test's
own. The steps call a local HTTP server that records every request; its answer to the
slow step comes late, so the kill lands while that step is in flight.

- A step safe to repeat (PUT) that was in flight is run again by the next worker, and no
  step before it is repeated.
- A step not safe to repeat (POST) that was in flight is not run again: the run stops as
  `interrupted` and says so, and no later step runs.
- Duplicated broker messages for a run change nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from incidents.db import create_db_engine
from incidents.tasks import PLAYBOOK_QUEUE, PLAYBOOK_TASK, task_sender
from tests.conftest import AUTH
from tests.factories import am_alert, am_payload
from tests.playbooks.servers import RecordingServer, Reply
from tests.workers.processes import (
    Command,
    PrivateRedis,
    free_port,
    port_open,
    service_env,
    wait_for,
)

PLAYBOOK = """
id: {name}
description: three calls; the middle one is slow
triggers: [{{event: incident_opened, matchers: ['alertname="{name}"']}}]
policy: {{max_runs_per_incident: 1, max_runs_per_hour: 100}}
steps:
  - name: first
    action: http.request
    params: {{method: POST, url: "{url}/{name}/first"}}
  - name: slow
    action: http.request
    params: {{method: {method}, url: "{url}/{name}/slow"}}
    timeout: 30s
  - name: last
    action: http.request
    params: {{method: POST, url: "{url}/{name}/last"}}
"""


def _run(engine: sa.Engine, playbook: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT id, status, error FROM playbook_runs WHERE playbook_id = :p"),
            {"p": playbook},
        ).first()
        if row is None:
            return None
        steps = conn.execute(
            sa.text(
                "SELECT name, status, attempts FROM playbook_steps WHERE run_id = :r "
                "ORDER BY position"
            ),
            {"r": row[0]},
        ).all()
    return {"id": row[0], "status": row[1], "error": row[2], "steps": [tuple(s) for s in steps]}


@pytest.mark.postgres
def test_a_playbook_worker_killed_mid_step_resumes_without_repeating_a_step(
    pg_url: str, tmp_path: Path
) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    engine = create_db_engine(pg_url)
    commands: list[Command] = []
    with RecordingServer() as server:
        folder = tmp_path / "playbooks"
        folder.mkdir()
        for name, method in (("Repeatable", "PUT"), ("Once", "POST")):
            (folder / f"{name}.yaml").write_text(
                PLAYBOOK.format(name=name.lower(), url=server.url, method=method).replace(
                    f'alertname="{name.lower()}"', f'alertname="{name}"'
                )
            )
            # The first answer comes late (the kill lands then), later ones at once.
            server.respond(method, f"/{name.lower()}/slow", Reply(delay=20), Reply())
        env = service_env(pg_url, redis.url, lease_seconds=2, sweep_interval_seconds=1)
        env |= {
            "INCIDENTS_CORRELATION__OPEN_HOLD_SECONDS": "0",
            "INCIDENTS_PLAYBOOKS__FOLDER": str(folder),
            "INCIDENTS_PLAYBOOKS__LEASE_SECONDS": "3",
            "INCIDENTS_PLAYBOOKS__SWEEP_INTERVAL_SECONDS": "0.5",
        }
        port = free_port()

        def start(name: str, *args: str) -> Command:
            command = Command(["incidents.cli", *args], env, tmp_path / f"{name}.log", tmp_path)
            commands.append(command)
            return command

        def logs() -> str:
            return "".join(c.output() for c in commands)[-4000:]

        try:
            start("api", "serve", "--no-migrate", "--port", str(port))
            start("worker", "worker", "--concurrency", "1")
            playbooks = start("playbooks", "playbook-worker", "--concurrency", "2")
            start("beat", "beat")
            wait_for(lambda: port_open(port), 30, "the API to listen")
            wait_for(lambda: "ready" in playbooks.output(), 30, "the playbook worker to start")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as client:
                for name in ("Repeatable", "Once"):
                    alert = am_alert({"alertname": name, "service": f"svc-{name}"})
                    response = client.post(
                        "/api/v1/alerts/alertmanager", content=orjson.dumps(am_payload([alert]))
                    )
                    assert response.status_code == 200, response.text

            def both_slow_in_flight() -> bool:
                return bool(
                    server.requests_to("PUT", "/repeatable/slow")
                    and server.requests_to("POST", "/once/slow")
                )

            wait_for(both_slow_in_flight, 60, "both slow steps to be in flight")
            playbooks.kill_child()  # SIGKILL: the supervisor starts the worker again

            def settled() -> bool:
                runs = [_run(engine, p) for p in ("repeatable", "once")]
                return all(
                    r is not None and r["status"] in ("succeeded", "interrupted") for r in runs
                )

            wait_for(settled, 60, f"both runs to settle; logs: {logs()}")
            # Duplicated broker messages for both runs: they find nothing to do.
            sender = task_sender(redis.url, timeout=2)
            for playbook in ("repeatable", "once"):
                run = _run(engine, playbook)
                assert run is not None
                for _ in range(3):
                    sender.send_task(
                        PLAYBOOK_TASK, kwargs={"run_id": run["id"]}, queue=PLAYBOOK_QUEUE
                    )
            time.sleep(3)
        finally:
            for command in commands:
                command.stop()
            redis.kill()

        calls = [(r.method, r.path) for r in server.requests]
        repeatable = _run(engine, "repeatable")
        once = _run(engine, "once")
        engine.dispose()

    assert repeatable is not None and once is not None
    # Safe to repeat: the slow PUT ran again, nothing before it did, the run finished.
    assert repeatable["status"] == "succeeded", repeatable
    assert repeatable["steps"] == [
        ("first", "succeeded", 1),
        ("slow", "succeeded", 2),
        ("last", "succeeded", 1),
    ]
    assert calls.count(("POST", "/repeatable/first")) == 1
    assert calls.count(("PUT", "/repeatable/slow")) == 2
    assert calls.count(("POST", "/repeatable/last")) == 1
    # Not safe to repeat: the POST in flight was not sent again, and the run says why.
    assert once["status"] == "interrupted", once
    assert once["steps"] == [
        ("first", "succeeded", 1),
        ("slow", "interrupted", 1),
        ("last", "skipped", 0),
    ]
    assert "not safe to repeat" in once["error"]
    assert calls.count(("POST", "/once/first")) == 1
    assert calls.count(("POST", "/once/slow")) == 1
    assert ("POST", "/once/last") not in calls
