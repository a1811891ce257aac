"""Playbook approvals in Slack: the request is a reply in the incident's thread with
Approve and Reject buttons, and a signed press from a known user decides it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.acting.stage import ALICE
from tests.api.incident_pipe import entries
from tests.notify.test_routing_stage import notifications, wait_until
from tests.remediation.approval_stage import ApprovalStage, approval_stage, buttons
from tests.remediation.conftest import wait_run


@pytest.fixture
def stage(
    db_url: str, client_for: Callable[..., TestClient], tmp_path: Path
) -> Iterator[ApprovalStage]:
    with approval_stage(db_url, client_for, tmp_path / "playbooks") as made:
        yield made


def test_approve_in_the_thread_runs_the_step(stage: ApprovalStage) -> None:
    iid, run = stage.trigger()
    message = stage.wait_approval_message()
    [incident_message] = stage.slack.top_level()
    # A reply in the incident's thread, not a post of its own.
    assert message.thread_ts == incident_message.ts
    assert "service-down" in message.body["text"] and "scale_up" in message.body["text"]
    shown = buttons(message.body)
    assert list(shown) == ["playbook_approve", "playbook_reject"]
    assert {b["value"] for b in shown.values()} == {str(run["id"])}
    assert shown["playbook_reject"]["style"] == "danger" and "confirm" in shown["playbook_reject"]
    context = str(message.body["blocks"])
    assert f"approve {run['approval']['code']}" in context

    response = stage.decide("U0ALICE", "playbook_approve", run["id"])

    assert response.status_code == 200, response.text
    assert response.json()["response_type"] == "ephemeral"
    assert response.json()["text"].startswith(f"Approved: run {run['id']} of playbook")
    done = wait_run(stage.client, run["id"])
    assert done["status"] == "succeeded", done
    assert done["decided_by"] == "alice"
    assert [s["status"] for s in done["steps"]] == ["succeeded", "succeeded"]
    timeline = stage.state(iid)["timeline"]
    [decision] = [e for e in entries(stage.state(iid), "playbook_run") if "decision" in e["data"]]
    assert decision["actor"] == "alice"
    said = {k: decision["data"].get(k) for k in ("decision", "by", "via")}
    assert said == {"decision": "approved", "by": "alice", "via": "slack"}
    assert any(e["message"] == "scaled database-postgres up" for e in timeline), timeline
    # The person is answered, and the request's message stops offering the buttons.
    wait_until("the answers", lambda: len(stage.slack.calls("respond")) == 2)
    answers = [r.body for r in stage.slack.calls("respond")]
    assert any(a.get("response_type") == "ephemeral" for a in answers)
    [replaced] = [a for a in answers if a.get("replace_original")]
    assert "by alice" in replaced["text"] and not buttons(replaced)

    again = stage.decide("U0ALICE", "playbook_approve", run["id"])
    assert again.status_code == 200
    assert f"run {run['id']} is succeeded, not waiting for approval" in again.json()["text"]


def test_reject_stops_the_run(stage: ApprovalStage) -> None:
    iid, run = stage.trigger()
    stage.wait_approval_message()

    response = stage.decide("U0ALICE", "playbook_reject", run["id"])

    assert response.json()["text"].startswith(f"Rejected: run {run['id']}")
    done = stage.run(run["id"])
    assert done["status"] == "rejected" and done["decided_by"] == "alice"
    assert done["error"] == "rejected by alice" and done["approval"] is None
    assert [s["status"] for s in done["steps"]] == ["succeeded", "skipped"]
    summaries = [e["message"] for e in stage.state(iid)["timeline"]]
    assert not any("scaled" in s for s in summaries)
    assert any("rejected by alice" in s for s in summaries)
    later = stage.decide("U0ALICE", "playbook_approve", run["id"])
    assert f"run {run['id']} is rejected, not waiting for approval" in later.json()["text"]


def test_an_unknown_slack_user_changes_nothing(
    stage: ApprovalStage, caplog: pytest.LogCaptureFixture
) -> None:
    _, run = stage.trigger()
    response = stage.decide("U0NOBODY", "playbook_approve", run["id"])
    assert response.status_code == 200
    assert "not a known user" in response.json()["text"]
    assert stage.run(run["id"])["status"] == "waiting_approval"
    assert stage.run(run["id"])["decided_by"] is None
    assert any("U0NOBODY" in r.getMessage() for r in caplog.records)
    # A forged press is refused before anything is read.
    forged = stage.click("U0ALICE", "playbook_approve", run["id"], secret="not-the-secret")
    assert forged.status_code == 403
    stale = stage.click("U0ALICE", "playbook_approve", run["id"], age=6 * 60)
    assert stale.status_code == 403 and "replay" in stale.json()["message"]
    assert stage.run(run["id"])["status"] == "waiting_approval"


def test_the_request_goes_to_slack_email_and_sms_only(stage: ApprovalStage) -> None:
    iid, run = stage.trigger()
    stage.wait_approval_message()
    asked = [n for n in notifications(stage.pipe, iid) if n["event"] == "approval"]
    assert sorted(n["channel"] for n in asked) == ["slack", "sms"]
    # No other playbook entry (the run starting, a step done) is sent anywhere.
    assert {n["event"] for n in notifications(stage.pipe, iid)} == {"opened", "approval"}
    assert stage.decide("U0ALICE", "playbook_approve", 99999).json()["text"] == (
        "no playbook run 99999"
    )
    bad = stage.raw_click(
        {
            "type": "block_actions",
            "user": {"id": "U0ALICE"},
            "actions": [{"action_id": "playbook_reject", "value": "run-1"}],
        }
    )
    assert bad.status_code == 400 and "playbook run id" in bad.json()["message"]
    assert stage.run(run["id"])["status"] == "waiting_approval"


def test_a_request_made_during_the_opening_hold_still_threads(
    db_url: str, client_for: Callable[..., TestClient], tmp_path: Path
) -> None:
    with approval_stage(db_url, client_for, tmp_path / "playbooks", hold=1.5) as stage:
        _, run = stage.trigger()
        # The run waits at once; the request waits for the incident's own message.
        message = stage.wait_approval_message()
        [incident_message] = stage.slack.top_level()
        assert message.thread_ts == incident_message.ts
        assert buttons(message.body)["playbook_approve"]["value"] == str(run["id"])


def test_an_expired_request_is_answered_with_its_status(
    db_url: str, client_for: Callable[..., TestClient], tmp_path: Path
) -> None:
    with approval_stage(db_url, client_for, tmp_path / "playbooks", timeout=2) as stage:
        iid, run = stage.trigger()
        assert run["approval"]["step"] == "scale_up"
        stage.wait_texts(ALICE, 2)  # the page and the request
        done = wait_run(stage.client, run["id"])
        assert done["status"] == "expired" and done["approval"] is None
        press = stage.decide("U0ALICE", "playbook_approve", run["id"])
        assert f"run {run['id']} is expired, not waiting for approval" in press.json()["text"]
        text = stage.sms(ALICE, "y").text
        assert f"No playbook run of incident #{iid} waits for approval" in text
        assert stage.run(run["id"])["decided_by"] is None
