"""Runs through the API: manual and dry runs, approval, rejection, expiry, cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.api.incident_pipe import Pipeline, alert, kinds, recent
from tests.conftest import AUTH
from tests.remediation.conftest import wait_run, wait_runs

GATED = """
id: gated
description: a note, then a status change that needs approval
triggers: [{event: incident_opened, matchers: ['alertname="DatabaseDown"']}]
steps:
  - name: note
    action: incident.annotate
    params: {message: "checking {{ incident.root_service }}"}
  - name: investigate
    action: incident.set_status
    approval: required
    params: {status: investigating}
"""

MANUAL = """
id: by-hand
description: only run by hand
policy: {max_runs_per_incident: 1}
steps:
  - name: note
    action: incident.annotate
    params: {message: "by hand on {{ incident.id }}"}
  - name: resolve
    action: incident.resolve
    if: steps.note.ok
    params: {message: "fixed by the playbook"}
"""


def _incident(pipe: Pipeline, name: str = "DatabaseDown") -> dict[str, Any]:
    pipe.post(alert("database-postgres", name, recent(1), "P0"))
    (incident,) = pipe.incidents()
    return incident


def _post(pipe: Pipeline, path: str, body: dict[str, Any] | None = None) -> Any:
    return pipe.client.post(path, json=body, headers=AUTH)


def test_an_approval_gated_step_waits_then_runs_once_approved(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    pipe = playbook_pipe(gated=GATED)
    incident = _incident(pipe)
    (run,) = wait_runs(pipe.client, incident["id"])
    run = wait_run(pipe.client, run["id"], lambda r: r["status"] == "waiting_approval")
    assert [s["status"] for s in run["steps"]] == ["succeeded", "pending"]
    assert run["approval"]["step"] == "investigate" and 1000 <= run["approval"]["code"] <= 9999
    assert pipe.incident(incident["id"])["state"] == "triggered"
    approved = _post(pipe, f"/api/v1/playbook-runs/{run['id']}/approve", {"message": "go"})
    assert approved.status_code == 200, approved.text
    run = wait_run(pipe.client, run["id"])
    assert run["status"] == "succeeded"
    assert run["decided_by"] == "bootstrap-token" and run["decided_at"]
    assert pipe.incident(incident["id"])["state"] == "investigating"
    again = _post(pipe, f"/api/v1/playbook-runs/{run['id']}/approve")
    assert again.status_code == 409
    assert "succeeded, not waiting for approval" in again.json()["message"]


def test_a_rejected_step_stops_the_run(playbook_pipe: Callable[..., Pipeline]) -> None:
    pipe = playbook_pipe(gated=GATED)
    incident = _incident(pipe)
    (run,) = wait_runs(pipe.client, incident["id"])
    wait_run(pipe.client, run["id"], lambda r: r["status"] == "waiting_approval")
    rejected = _post(pipe, f"/api/v1/playbook-runs/{run['id']}/reject", {"message": "not now"})
    assert rejected.json()["status"] == "rejected"
    assert [s["status"] for s in rejected.json()["steps"]] == ["succeeded", "skipped"]
    assert pipe.incident(incident["id"])["state"] == "triggered"
    messages = [e["message"] for e in pipe.incident(incident["id"])["timeline"]]
    assert any("rejected by bootstrap-token: not now" in m for m in messages)


def test_an_unanswered_approval_expires(playbook_pipe: Callable[..., Pipeline]) -> None:
    pipe = playbook_pipe({"playbooks": {"approval_timeout_seconds": 0.3}}, gated=GATED)
    incident = _incident(pipe)
    (run,) = wait_runs(pipe.client, incident["id"])
    run = wait_run(pipe.client, run["id"])
    assert run["status"] == "expired" and run["error"] == "nobody approved in time"
    assert run["steps"][1]["status"] == "skipped"


def test_a_dry_run_acts_on_nothing_and_does_not_count(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    pipe = playbook_pipe(**{"by-hand": MANUAL})
    incident = _incident(pipe, "Anything")
    path = "/api/v1/playbooks/by-hand/run"
    for _ in range(3):
        dry = _post(pipe, path, {"incident_id": incident["id"], "dry_run": True})
        assert dry.status_code == 202, dry.text
        run = wait_run(pipe.client, dry.json()["id"])
        assert run["status"] == "succeeded" and run["dry_run"]
        note, resolve = run["steps"]
        assert note["status"] == resolve["status"] == "would_run"
        assert note["params"] == {"message": f"by hand on {incident['id']}"}
        assert resolve["result"] == {"would": "resolve the incident", "if": "steps.note.ok"}
    assert pipe.incident(incident["id"])["state"] == "triggered"
    real = _post(pipe, path, {"incident_id": incident["id"]})
    assert real.status_code == 202
    assert wait_run(pipe.client, real.json()["id"])["status"] == "succeeded"
    assert pipe.incident(incident["id"])["state"] == "resolved"
    refused = _post(pipe, path, {"incident_id": incident["id"]})
    assert refused.status_code == 409
    assert refused.json()["limit"] == "max_runs_per_incident"


def test_cancel_stops_a_waiting_run_and_then_says_it_has_stopped(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    pipe = playbook_pipe(gated=GATED)
    incident = _incident(pipe)
    (run,) = wait_runs(pipe.client, incident["id"])
    wait_run(pipe.client, run["id"], lambda r: r["status"] == "waiting_approval")
    cancelled = _post(pipe, f"/api/v1/playbook-runs/{run['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = _post(pipe, f"/api/v1/playbook-runs/{run['id']}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["message"]
    assert _post(pipe, f"/api/v1/playbook-runs/{run['id']}/approve").status_code == 409


def test_reading_playbooks_and_bad_requests(playbook_pipe: Callable[..., Pipeline]) -> None:
    pipe = playbook_pipe(gated=GATED, **{"by-hand": MANUAL})
    listed = pipe.client.get("/api/v1/playbooks", headers=AUTH).json()
    assert [p["id"] for p in listed] == ["by-hand", "gated"]
    one = pipe.client.get("/api/v1/playbooks/gated", headers=AUTH).json()
    assert one["steps"][1] == {
        "name": "investigate",
        "action": "incident.set_status",
        "if": None,
        "approval": "required",
        "on_failure": "stop",
        "params": {"status": "investigating"},
    }
    assert pipe.client.get("/api/v1/playbooks/nope", headers=AUTH).status_code == 404
    assert pipe.client.get("/api/v1/playbook-runs/99", headers=AUTH).status_code == 404
    assert pipe.client.get("/api/v1/incidents/99/playbook-runs", headers=AUTH).status_code == 404
    missing = _post(pipe, "/api/v1/playbooks/gated/run", {"incident_id": 99})
    assert missing.status_code == 404 and "incident 99" in missing.json()["message"]
    bad = _post(pipe, "/api/v1/playbooks/gated/run", {"incident_id": "x", "dry": 1})
    assert bad.status_code == 422
    assert "incident_id" in bad.text and "dry" in bad.text
    assert "playbook_run" not in kinds(pipe.incident(_incident(pipe, "Other")["id"]))


def test_an_approval_with_a_key_records_its_owner_and_needs_incidents_write(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    from tests.api.keys import KEY_SECRET, bearer, make_key

    pipe = playbook_pipe({"auth": {"key_secret": KEY_SECRET}}, gated=GATED)
    incident = _incident(pipe)
    (run,) = wait_runs(pipe.client, incident["id"])
    wait_run(pipe.client, run["id"], lambda r: r["status"] == "waiting_approval")
    reader = make_key(pipe.client, "reader", "incidents:read")
    carol = make_key(pipe.client, "carol-laptop", "incidents:write", owner="carol")
    path = f"/api/v1/playbook-runs/{run['id']}/approve"
    refused = pipe.client.post(path, headers=bearer(reader))
    assert refused.status_code == 403 and "incidents:write" in refused.json()["message"]
    approved = pipe.client.post(path, headers=bearer(carol))
    assert approved.status_code == 200, approved.text
    assert wait_run(pipe.client, run["id"])["decided_by"] == "carol"
    messages = [e["message"] for e in pipe.incident(incident["id"])["timeline"]]
    assert any("approved by carol" in m for m in messages)
