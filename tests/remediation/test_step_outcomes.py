"""What a step's outcome does to the rest: `if` on earlier results, continue, compensate,
retries; and the silence and dry-run command."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from incidents.cli import main
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH
from tests.playbooks.servers import RecordingServer, Reply
from tests.remediation.conftest import wait_run, wait_runs, write_playbooks

FLOW = """
id: flow
description: a failing call, what follows from it, and a compensation
triggers: [{{event: incident_opened, matchers: ['alertname="Flow"']}}]
steps:
  - name: probe
    action: http.request
    params: {{method: GET, url: "{url}/probe"}}
    retries: {{attempts: 2, backoff: 0s}}
    on_failure: continue
  - name: only_if_ok
    action: http.request
    if: steps.probe.ok
    params: {{method: POST, url: "{url}/never"}}
  - name: only_if_failed
    action: http.request
    if: steps.probe.failed and steps.probe.result.status == 500
    params:
      method: POST
      url: "{url}/fallback"
      body: {{status: "{{{{ steps.probe.result.status }}}}"}}
  - name: shift
    action: http.request
    params: {{method: PUT, url: "{url}/shift"}}
    on_failure: compensate
    compensate:
      name: undo
      action: http.request
      params: {{method: POST, url: "{url}/undo"}}
  - name: after
    action: http.request
    params: {{method: POST, url: "{url}/after"}}
"""


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as recording:
        yield recording


def test_a_failing_step_skips_what_needed_it_and_a_failed_shift_is_compensated(
    playbook_pipe: Callable[..., Pipeline], server: RecordingServer
) -> None:
    server.respond("GET", "/probe", Reply(status=500, text="boom"))
    server.respond("PUT", "/shift", Reply(status=409, text="conflict"))
    pipe = playbook_pipe(flow=FLOW.format(url=server.url))
    pipe.post(alert("api-gateway", "Flow", recent(1), "P1"))
    (incident,) = pipe.incidents()
    (run,) = wait_runs(pipe.client, incident["id"])
    run = wait_run(pipe.client, run["id"])
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["probe"]["status"] == "failed" and steps["probe"]["attempts"] == 1
    assert steps["probe"]["result"]["status"] == 500  # not retryable: tried once
    assert steps["only_if_ok"]["status"] == "skipped"
    assert steps["only_if_failed"]["status"] == "succeeded"
    assert steps["shift"]["status"] == "failed"
    assert steps["undo"]["status"] == "succeeded" and steps["undo"]["position"] == 1003
    assert steps["after"]["status"] == "skipped"
    assert run["status"] == "failed" and run["error"] == "step shift failed"
    calls = [(r.method, r.path) for r in server.requests]
    assert calls == [
        ("GET", "/probe"),
        ("POST", "/fallback"),
        ("PUT", "/shift"),
        ("POST", "/undo"),
    ]
    assert server.requests[1].json() == {"status": "500"}


def test_a_retryable_failure_is_tried_again_with_backoff(
    playbook_pipe: Callable[..., Pipeline], server: RecordingServer
) -> None:
    server.respond("GET", "/probe", Reply(status=503), Reply(status=200))
    pipe = playbook_pipe(flow=FLOW.format(url=server.url))
    pipe.post(alert("api-gateway", "Flow", recent(1), "P1"))
    (incident,) = pipe.incidents()
    (run,) = wait_runs(pipe.client, incident["id"])
    run = wait_run(pipe.client, run["id"])
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["probe"]["status"] == "succeeded" and steps["probe"]["attempts"] == 2
    assert steps["only_if_ok"]["status"] == "succeeded"
    assert steps["only_if_failed"]["status"] == "skipped"
    assert run["status"] == "succeeded"


SILENCE = """
id: quiet
description: silence the incident's alerts while a fix settles
triggers: [{event: incident_opened, matchers: ['alertname="Noisy"']}]
steps:
  - name: hush
    action: silence.create
    params: {duration: 30m, comment: "settling"}
"""


def test_silence_create_silences_the_incidents_alerts_for_a_bounded_time(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    pipe = playbook_pipe(quiet=SILENCE)
    pipe.post(alert("api-gateway", "Noisy", recent(1), "P1"))
    (incident,) = pipe.incidents()
    (run,) = wait_runs(pipe.client, incident["id"])
    run = wait_run(pipe.client, run["id"])
    assert run["status"] == "succeeded", run
    (silence_id,) = run["steps"][0]["result"]["silences"]
    silence = pipe.client.get(f"/api/v1/silences/{silence_id}", headers=AUTH).json()
    assert silence["matchers"] == ['alertname="Noisy"', 'service="api-gateway"']
    assert silence["created_by"] == "playbook:quiet"
    assert "settling" in silence["comment"]
    assert silence["state"] == "active"


def test_playbooks_test_dry_runs_a_playbook_against_a_stored_incident(
    playbook_pipe: Callable[..., Pipeline],
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipe = playbook_pipe(quiet=SILENCE)
    pipe.post(alert("api-gateway", "Other", recent(1), "P1"))
    (incident,) = pipe.incidents()
    folder = write_playbooks(tmp_path / "cli", quiet=SILENCE)
    monkeypatch.setenv("INCIDENTS_DATABASE_URL", db_url)
    monkeypatch.setenv("INCIDENTS_PLAYBOOKS__FOLDER", str(folder))
    assert main(["playbooks", "test", "quiet", "--incident", str(incident["id"])]) == 0
    out = capsys.readouterr().out
    assert "of quiet on incident" in out
    assert "hush" in out and "would_run" in out and "silence the incident's alerts for 30m" in out
    silences = pipe.client.get("/api/v1/silences", headers=AUTH).json()
    assert silences == []  # a dry run silences nothing
    assert main(["playbooks", "test", "nope", "--incident", "1"]) == 2
    assert "no playbook 'nope' (known: quiet)" in capsys.readouterr().err


SLOW = """
id: slow
description: a slow call that fails, then another
triggers: [{{event: incident_opened, matchers: ['alertname="Slow"']}}]
steps:
  - name: slow
    action: http.request
    params: {{method: GET, url: "{url}/slow"}}
  - name: next
    action: http.request
    params: {{method: GET, url: "{url}/next"}}
"""


def test_a_run_cancelled_while_a_step_is_in_flight_stays_cancelled(
    playbook_pipe: Callable[..., Pipeline], server: RecordingServer
) -> None:
    import time

    server.respond("GET", "/slow", Reply(status=500, delay=1.0))
    pipe = playbook_pipe(slow=SLOW.format(url=server.url))
    pipe.post(alert("api-gateway", "Slow", recent(1), "P1"))
    (incident,) = pipe.incidents()
    (run,) = wait_runs(pipe.client, incident["id"])
    deadline = time.monotonic() + 10
    while not server.requests_to("GET", "/slow") and time.monotonic() < deadline:
        time.sleep(0.02)
    cancelled = pipe.client.post(f"/api/v1/playbook-runs/{run['id']}/cancel", headers=AUTH)
    assert cancelled.status_code == 200, cancelled.text
    time.sleep(1.5)  # the step in flight finishes (and fails) meanwhile
    run = wait_run(pipe.client, run["id"], lambda r: r["steps"][0]["status"] == "failed")
    assert run["status"] == "cancelled"
    assert [s["status"] for s in run["steps"]] == ["failed", "skipped"]
    assert server.requests_to("GET", "/next") == []
