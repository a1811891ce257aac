"""Playbook approvals by SMS: the request texted to the on-call's phone with its reply
code, and `12y` / `12n` / `y` / `approve 4821` replies through the signed Twilio webhook."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from incidents.acting.sms_reply import HELP, Command, parse
from tests.acting.stage import ALICE, BOB, STRANGER
from tests.api.incident_pipe import entries
from tests.remediation.approval_stage import ApprovalStage, approval_stage
from tests.remediation.conftest import wait_run

ASKED = re.compile(
    r"P1 #(\d+) playbook service-down wants to run scale_up \(incident\.annotate\)\. "
    r"Reply (\d+)y to approve, (\d+)n to reject \(or approve (\d{4})\)"
)


@pytest.fixture
def stage(
    db_url: str, client_for: Callable[..., TestClient], tmp_path: Path
) -> Iterator[ApprovalStage]:
    with approval_stage(db_url, client_for, tmp_path / "playbooks") as made:
        yield made


def asked(stage: ApprovalStage, iid: int, run: dict[str, object]) -> str:
    """The reply code the approval text gives alice, checked against the run."""
    texts = stage.wait_texts(ALICE, 2)  # the page, then the request
    [text] = [t for t in texts if "playbook" in t]
    match = ASKED.fullmatch(text)
    assert match, text
    assert int(match[1]) == iid and match[2] == match[3]
    assert int(match[4]) == run["approval"]["code"]  # type: ignore[index]
    # The page taught the same code for this incident.
    [page] = [t for t in texts if "playbook" not in t]
    assert f"'{match[2]}a' to ack" in page
    return match[2]


def test_12y_approves_and_the_step_runs(stage: ApprovalStage) -> None:
    iid, run = stage.trigger()
    code = asked(stage, iid, run)

    response = stage.sms(ALICE, f" {code}Y ")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert f"<Message>Approved: run {run['id']} of playbook service-down" in response.text
    done = wait_run(stage.client, run["id"])
    assert done["status"] == "succeeded" and done["decided_by"] == "alice"
    [decision] = [e for e in entries(stage.state(iid), "playbook_run") if "decision" in e["data"]]
    assert decision["actor"] == "alice" and decision["data"]["via"] == "sms"
    assert "approved by alice" in decision["message"]


def test_approve_by_code_from_another_users_phone(stage: ApprovalStage) -> None:
    iid, run = stage.trigger()
    asked(stage, iid, run)
    number = run["approval"]["code"]

    response = stage.sms(BOB, f"approve {number}")

    assert f"Approved: run {run['id']}" in response.text
    assert wait_run(stage.client, run["id"])["decided_by"] == "bob"
    # The code is spent with the decision.
    again = stage.sms(BOB, f"approve {number}")
    assert f"No playbook run waits for approval code {number}" in again.text


def test_12n_rejects_then_nothing_waits(stage: ApprovalStage) -> None:
    iid, run = stage.trigger()
    code = asked(stage, iid, run)

    response = stage.sms(ALICE, f"{code}n")

    assert f"Rejected: run {run['id']}" in response.text
    done = stage.run(run["id"])
    assert done["status"] == "rejected" and done["decided_by"] == "alice"
    later = stage.sms(ALICE, "y")  # the last incident texted to alice
    assert f"No playbook run of incident #{iid} waits for approval" in later.text
    # A Slack press on the same request says what became of it.
    press = stage.decide("U0ALICE", "playbook_approve", run["id"])
    assert f"run {run['id']} is rejected, not waiting for approval" in press.json()["text"]


def test_unknown_phones_and_codes_change_nothing(stage: ApprovalStage) -> None:
    iid, run = stage.trigger()
    code = asked(stage, iid, run)
    stranger = stage.sms(STRANGER, f"{code}y")
    assert stranger.status_code == 200 and "<Message>" not in stranger.text
    unknown = stage.sms(ALICE, "77y")
    assert "No open incident has code 77 for this phone" in unknown.text
    wrong = stage.sms(ALICE, "reject 1")
    assert "No playbook run waits for approval code 1" in wrong.text
    # Bob was never texted about this incident: his bare `n` names none.
    assert "No open incident was texted to this phone" in stage.sms(BOB, "n").text
    assert stage.run(run["id"])["status"] == "waiting_approval"


@pytest.mark.parametrize(
    ("body", "command"),
    [
        ("12y", Command("decide", "approve", "code", 12)),
        (" 3 N ", Command("decide", "reject", "code", 3)),
        ("y", Command("decide", "approve", "last")),
        ("N", Command("decide", "reject", "last")),
        ("approve 4821", Command("decide", "approve", "approval", 4821)),
        ("Reject #4821", Command("decide", "reject", "approval", 4821)),
        ("12a", Command("act", "acknowledge", "code", 12)),
        ("yes", Command("opt_in", word="yes")),  # Twilio's word, not an approval
    ],
)
def test_approval_replies_are_understood(body: str, command: Command) -> None:
    assert parse(body) == command


@pytest.mark.parametrize("body", ["yy", "12yn", "approve", "approve me", "y 12"])
def test_near_misses_are_not(body: str) -> None:
    assert parse(body) is None


def test_help_mentions_y_and_n() -> None:
    assert "12y or 12n" in HELP
