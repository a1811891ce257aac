"""The service with a playbook whose second step needs approval, routed to a Slack channel
and to phones, with the Slack and Twilio stand-ins (the real slack-sdk and twilio clients
talk to them) and signed requests as the providers make them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi.testclient import TestClient

from tests.acting.stage import ALICE, BOB, SECRET, SLACK_PATH, Stage, slack_headers
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH
from tests.notify.fake_slack import FakeSlack, Message
from tests.notify.fake_twilio import FROM_NUMBER, FakeTwilio
from tests.notify.test_routing_stage import wait_until
from tests.remediation.conftest import wait_run, wait_runs, write_playbooks

CHANNEL = "#incidents"
PLAYBOOK = """
id: service-down
description: Notes what it looks at, then notes the fix once a person approved it
triggers:
  - event: incident_opened
    matchers: ['alertname="ServiceDown"']
steps:
  - name: look
    action: incident.annotate
    params: {message: "looking at {{ incident.root_service }}"}
  - name: scale_up
    action: incident.annotate
    approval: required
    params: {message: "scaled {{ incident.root_service }} up"}
"""
USERS = {
    "users": [
        {"name": "alice", "phone": ALICE, "slack_user_id": "U0ALICE"},
        {"name": "bob", "phone": BOB},
    ]
}
# Everything goes to the channel and to alice's phone; the console gets no approvals.
ROUTING: dict[str, Any] = {
    "receivers": [
        {"name": "oncall", "slack": [CHANNEL], "sms": [ALICE], "console": ["stdout"]},
    ],
    "route": {"receiver": "oncall"},
}


class ApprovalStage(Stage):
    """The acting stage, with a playbook run to decide on."""

    def trigger(self) -> tuple[int, dict[str, Any]]:
        """Open an incident that starts the playbook; its run once it waits."""
        self.pipe.post(alert("database-postgres", "ServiceDown", recent(1), "P1"))
        [incident] = self.pipe.live()
        [run] = wait_runs(self.client, incident["id"])
        run = wait_run(self.client, run["id"], lambda r: r["status"] == "waiting_approval")
        return int(incident["id"]), run

    def run(self, run_id: int) -> dict[str, Any]:
        """A run as the API shows it."""
        response = self.client.get(f"/api/v1/playbook-runs/{run_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def approval_messages(self) -> list[Message]:
        """The Slack messages that carry the approval buttons."""
        tops = self.slack.top_level()
        held = tops + [r for m in tops for r in self.slack.replies(m.channel, m.ts)]
        return [m for m in held if "playbook_approve" in buttons(m.body)]

    def wait_approval_message(self) -> Message:
        """The one approval request posted to Slack."""
        wait_until("the approval request in Slack", lambda: len(self.approval_messages()) == 1)
        [message] = self.approval_messages()
        return message

    def decide(self, slack_user: str, action: str, run_id: int) -> httpx.Response:
        """A signed press of an approval button."""
        return self.click(slack_user, action, run_id)

    def raw_click(self, payload: dict[str, Any]) -> httpx.Response:
        """A signed interaction request with any payload."""
        body = urlencode({"payload": json.dumps(payload)})
        return self.client.post(SLACK_PATH, content=body, headers=slack_headers(body))


def buttons(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A message's buttons by action id."""
    return {
        e["action_id"]: e
        for block in body.get("blocks") or []
        if block.get("type") == "actions"
        for e in block.get("elements", [])
    }


@contextmanager
def approval_stage(
    db_url: str,
    client_for: Callable[..., TestClient],
    folder: Path,
    hold: float = 0,
    timeout: float = 1800,
) -> Iterator[ApprovalStage]:
    """The service with the playbook, the routing, the users and both stand-ins."""
    with FakeSlack() as slack, FakeTwilio() as twilio:
        client = client_for(
            db_url,
            routing=ROUTING,
            playbooks={
                "folder": str(write_playbooks(folder, **{"service-down": PLAYBOOK})),
                "sweep_interval_seconds": 0.5,
                "approval_timeout_seconds": timeout,
            },
            slack_bot_token=slack.token,
            slack_api_url=slack.api_url,
            slack_signing_secret=SECRET,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_from_number=FROM_NUMBER,
            twilio_api_url=twilio.url,
            correlation={"open_hold_seconds": hold},
        )
        pipe = Pipeline(client, db_url)
        pipe.load_graph()
        response = client.put("/api/v1/users", json=USERS, headers=AUTH)
        assert response.status_code == 200, response.text
        try:
            yield ApprovalStage(pipe, slack, twilio)
        finally:
            pipe.close()
