"""Notifications through Celery workers on Redis: once only, whatever happens to a worker.

The real processes: the API, a pipeline worker, notify workers (`incidents
notify-worker`, the notify queue) and beat, on PostgreSQL and a Redis of the test's own.
Slack and Twilio are local stand-ins that the real slack-sdk and twilio clients talk
HTTP to. Each answers late, so a worker killed while it waits has had its request taken
and never learned so: the case where a naive retry sends twice.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from incidents.db import create_db_engine
from incidents.tasks import NOTIFY_QUEUE, NOTIFY_TASK, task_sender
from tests.conftest import AUTH
from tests.factories import am_alert, am_payload
from tests.notify.fake_slack import FakeSlack
from tests.notify.fake_twilio import FakeTwilio
from tests.workers.processes import (
    Command,
    PrivateRedis,
    free_port,
    port_open,
    service_env,
    wait_for,
)

INCIDENTS = 10
PAGED_BY_SMS = 4  # the P0s; fewer than the flood limit of 5 texts per number
PHONE = "+15551230009"

CONFIG = f"""
routing:
  receivers:
    - name: critical
      slack: ["#incidents"]
      sms: ["{PHONE}"]
    - name: others
      slack: ["#incidents"]
  route:
    receiver: others
    routes:
      - matchers: ['severity="P0"']
        receiver: critical
"""


def _rows(engine: sa.Engine) -> list[tuple[int, str, str, str]]:
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT incident_id, channel, event, status FROM notifications")
        )
        return [(int(i), str(c), str(e), str(s)) for i, c, e, s in found]


def _openings_sent(engine: sa.Engine) -> int:
    return sum(1 for _, _, event, status in _rows(engine) if event == "opened" and status == "sent")


@pytest.mark.postgres
def test_a_notify_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    pg_url: str, tmp_path: Path
) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    commands: list[Command] = []
    engine = create_db_engine(pg_url)
    with FakeSlack() as slack, FakeTwilio() as twilio:
        twilio_settings = twilio.settings()
        env = service_env(pg_url, redis.url, lease_seconds=2, sweep_interval_seconds=1)
        env |= {
            "INCIDENTS_CONFIG": str(config),
            "INCIDENTS_CORRELATION__OPEN_HOLD_SECONDS": "0",
            # The P0 war room has tests of its own (tests/warroom).
            "INCIDENTS_WARROOM__ENABLED": "false",
            "INCIDENTS_NOTIFY__LEASE_SECONDS": "3",
            "INCIDENTS_NOTIFY__SWEEP_INTERVAL_SECONDS": "0.5",
            "INCIDENTS_SLACK_BOT_TOKEN": slack.token,
            "INCIDENTS_SLACK_API_URL": slack.api_url,
            "INCIDENTS_TWILIO_ACCOUNT_SID": twilio_settings.account_sid,
            "INCIDENTS_TWILIO_AUTH_TOKEN": twilio_settings.auth_token,
            "INCIDENTS_TWILIO_FROM_NUMBER": twilio_settings.from_number,
            "INCIDENTS_TWILIO_API_URL": twilio.url,
        }
        port = free_port()

        def start(name: str, *args: str) -> Command:
            command = Command(["incidents.cli", *args], env, tmp_path / f"{name}.log", tmp_path)
            commands.append(command)
            return command

        try:
            start("api", "serve", "--no-migrate", "--port", str(port))
            start("worker", "worker", "--concurrency", "2")
            notify = start("notify-1", "notify-worker", "--concurrency", "4")
            start("beat", "beat")
            wait_for(lambda: port_open(port), 30, "the API to listen")
            wait_for(lambda: "ready" in notify.output(), 30, "the notify worker to start")
            # Every request is taken at once and answered late: a kill lands mid-send.
            slack.answer_late(0.6)
            twilio.answer_delay = 0.6

            alerts = [
                am_alert(
                    {
                        "alertname": f"Down{i}",
                        "service": f"svc-{i}",
                        "severity": "critical" if i < PAGED_BY_SMS else "error",
                    }
                )
                for i in range(INCIDENTS)
            ]
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as client:
                for alert in alerts:
                    body = orjson.dumps(am_payload([alert]))
                    response = client.post("/api/v1/alerts/alertmanager", content=body)
                    assert response.status_code == 200, response.text

            # SIGKILL the notify worker the moment Slack has taken its third post: the
            # answer is still on its way, so that post is in doubt.
            wait_for(lambda: len(slack.top_level()) >= 3, 60, "the first pages to go out")
            notify.kill_child()
            killed_at = (len(slack.top_level()), len(twilio.messages()))
            # Texts go faster (no per-channel pacing): they may all be out by now.
            assert killed_at[0] < INCIDENTS, killed_at
            in_flight = Counter(status for *_, status in _rows(engine))

            # Duplicated broker messages: every channel handed out several times at once.
            sender = task_sender(redis.url, timeout=2)
            for _ in range(3):
                for channel in ("slack", "sms"):
                    sender.send_task(NOTIFY_TASK, kwargs={"channel": channel}, queue=NOTIFY_QUEUE)
            slack.answer_late(0)
            twilio.answer_delay = 0
            start("notify-2", "notify-worker", "--concurrency", "4")
            start("notify-3", "notify-worker", "--concurrency", "4")

            expected = INCIDENTS + PAGED_BY_SMS
            wait_for(lambda: _openings_sent(engine) == expected, 90, "every page to be sent")
            time.sleep(2)  # anything that would go out twice has had its chance
        finally:
            for command in commands:
                command.stop()
            redis.kill()
            engine.dispose()

        logs = "".join(c.output() for c in commands)
        # Nothing lost: one top-level Slack message per incident, one text per P0.
        posts = Counter(m.body["metadata"]["event_payload"]["incident"] for m in slack.top_level())
        assert len(posts) == INCIDENTS and set(posts.values()) == {1}, (posts, killed_at)
        texts = Counter(m["Body"] for m in twilio.messages())
        assert len(texts) == PAGED_BY_SMS and set(texts.values()) == {1}, texts
        assert {status for *_, status in _rows(engine)} <= {"sent", "cancelled"}, _rows(engine)
        # The kill left sends in doubt, and they were settled by asking the providers.
        assert in_flight["sending"] >= 1, in_flight
        assert "had gone out before" in logs, logs[-3000:]
