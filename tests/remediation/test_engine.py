"""The engine end to end on the embedded worker: triggers, steps, conditions, the record."""

from __future__ import annotations

from collections.abc import Callable

from tests.api.incident_pipe import Pipeline, alert, kinds, recent
from tests.remediation.conftest import wait_run, wait_runs

NOTES = """
id: note-it
description: Notes on the incident, then investigating when the note went well
triggers:
  - event: incident_opened
    matchers: ['alertname="ServiceDown"']
steps:
  - name: first
    action: incident.annotate
    params: {message: "remediating {{ incident.root_service }} for {{ alert.labels.alertname }}"}
  - name: second
    action: incident.set_status
    if: steps.first.ok
    params: {status: investigating, message: "playbook on it"}
  - name: never
    action: incident.resolve
    if: steps.first.failed
"""


def test_a_matching_incident_runs_its_playbook_step_by_step(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    pipe = playbook_pipe(**{"note-it": NOTES})
    pipe.post(alert("api-gateway", "ServiceDown", recent(1), "P1"))
    (incident,) = pipe.incidents()
    (run,) = wait_runs(pipe.client, incident["id"])
    run = wait_run(pipe.client, run["id"])
    assert run["status"] == "succeeded", run
    assert run["trigger"] == "incident_opened"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["first"]["status"] == "succeeded"
    assert steps["first"]["params"] == {"message": "remediating api-gateway for ServiceDown"}
    assert steps["second"]["status"] == "succeeded"
    assert steps["never"]["status"] == "skipped"
    detail = pipe.incident(incident["id"])
    assert detail["state"] == "investigating"
    assert "playbook_step" in kinds(detail) and "playbook_run" in kinds(detail)


def test_an_alert_that_matches_no_trigger_runs_nothing(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    pipe = playbook_pipe(**{"note-it": NOTES})
    pipe.post(alert("api-gateway", "HighLatency", recent(1), "P1"))
    (incident,) = pipe.incidents()
    response = pipe.client.get(
        f"/api/v1/incidents/{incident['id']}/playbook-runs",
        headers={"Authorization": "Bearer test-token"},
    )
    assert response.json() == []


def test_the_postmortem_tells_the_playbook_run_and_its_steps(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    pipe = playbook_pipe(**{"note-it": NOTES})
    pipe.post(alert("api-gateway", "ServiceDown", recent(1), "P1"))
    (incident,) = pipe.incidents()
    (run,) = wait_runs(pipe.client, incident["id"])
    wait_run(pipe.client, run["id"])
    auth = {"Authorization": "Bearer test-token"}
    path = f"/api/v1/incidents/{incident['id']}/postmortem"
    markdown = pipe.client.get(path, params={"format": "md"}, headers=auth).text
    assert "note-it" in markdown
    for step in ("first", "second", "never"):
        assert step in markdown
    document = pipe.client.get(path, params={"format": "json"}, headers=auth).json()
    kinds_seen = {entry["kind"] for entry in document["timeline"]}
    assert {"playbook_run", "playbook_step"} <= kinds_seen
