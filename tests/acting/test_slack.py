"""Slack's Acknowledge and Resolve buttons: signed by Slack, done as the clicking user, the
incident's message edited through the notify outbox, and the person answered."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from tests.acting.stage import SLACK_PATH, Stage, slack_headers
from tests.notify.test_routing_stage import wait_until


def test_a_valid_click_acknowledges_and_updates_the_message(stage: Stage) -> None:
    iid = stage.page("database-postgres")
    wait_until("the slack page", lambda: len(stage.slack.top_level()) == 1)

    response = stage.click("U0ALICE", "acknowledge", iid)

    assert response.status_code == 200, response.text
    assert response.json()["response_type"] == "ephemeral"
    assert response.json()["text"].startswith(f"Acknowledged #{iid}")
    detail = stage.state(iid)
    assert detail["state"] == "acknowledged"
    assert detail["acknowledged_by"] == "alice (via slack)"
    wait_until("the edit", lambda: len(stage.slack.calls("chat.update")) >= 1)
    edit = stage.slack.calls("chat.update")[-1]
    assert "acknowledged" in edit.body["text"]
    buttons = [e["action_id"] for b in edit.body["blocks"] for e in b.get("elements", [])]
    assert "acknowledge" not in buttons and "resolve" in buttons
    # The person is answered through the interaction's response_url.
    wait_until("the answer", lambda: len(stage.slack.calls("respond")) == 1)
    [answer] = stage.slack.calls("respond")
    assert answer.body["response_type"] == "ephemeral"
    assert answer.body["text"].startswith(f"Acknowledged #{iid}")

    again = stage.click("U0ALICE", "acknowledge", iid)
    assert again.status_code == 200
    assert f"cannot acknowledge incident {iid}: it is acknowledged" in again.json()["text"]

    done = stage.click("U0ALICE", "resolve", iid)
    assert done.json()["text"].startswith(f"Resolved #{iid}")
    assert stage.state(iid)["state"] == "resolved"


def test_bad_signatures_and_old_timestamps_are_refused(stage: Stage) -> None:
    iid = stage.page("database-postgres")
    wrong = stage.click("U0ALICE", "acknowledge", iid, secret="not-the-secret")
    assert wrong.status_code == 403 and "X-Slack-Signature" in wrong.json()["message"]
    old = stage.click("U0ALICE", "acknowledge", iid, age=6 * 60)
    assert old.status_code == 403 and "replay" in old.json()["message"]
    bare = stage.client.post(SLACK_PATH, content=b"payload=%7B%7D")
    assert bare.status_code == 403
    assert stage.state(iid)["state"] == "triggered"


def test_an_unknown_slack_user_is_refused(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    iid = stage.page("database-postgres")
    response = stage.click("U0NOBODY", "acknowledge", iid)
    assert response.status_code == 200
    assert "not a known user" in response.json()["text"]
    assert stage.state(iid)["state"] == "triggered"
    assert any("U0NOBODY" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps([1]),
        json.dumps({"type": "view_submission"}),
        json.dumps({"type": "block_actions", "user": {"id": "U0ALICE"}, "actions": []}),
        json.dumps(
            {
                "type": "block_actions",
                "user": {"id": "U0ALICE"},
                "actions": [{"action_id": "delete", "value": "1"}],
            }
        ),
        json.dumps(
            {
                "type": "block_actions",
                "user": {"id": "U0ALICE"},
                "actions": [{"action_id": "resolve", "value": "x1"}],
            }
        ),
    ],
)
def test_bad_payloads_are_a_400_never_a_500(stage: Stage, payload: str) -> None:
    body = urlencode({"payload": payload})
    response = stage.client.post(SLACK_PATH, content=body, headers=slack_headers(body))
    assert response.status_code == 400, response.text


def test_an_unknown_incident_is_said(stage: Stage) -> None:
    response = stage.click("U0ALICE", "resolve", 99999)
    assert response.status_code == 200 and "no incident 99999" in response.json()["text"]
