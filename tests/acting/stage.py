"""The service with Slack and Twilio stand-ins, users, and signed requests as the providers
make them (the real slack-sdk and twilio libraries on both sides)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH
from tests.notify.fake_slack import FakeSlack
from tests.notify.fake_twilio import FROM_NUMBER, FakeTwilio
from tests.notify.smtp_server import SmtpServer
from tests.notify.test_routing_stage import wait_until

ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230009"
STRANGER = "+15559990000"
MAILBOX = "oncall@example.com"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BASE = "http://testserver"
SMS_PATH = "/api/v1/integrations/twilio/sms"
VOICE_PATH = "/api/v1/integrations/twilio/voice"
SLACK_PATH = "/api/v1/integrations/slack/actions"
USERS = {
    "users": [
        {"name": "alice", "phone": ALICE, "slack_user_id": "U0ALICE"},
        {"name": "bob", "phone": BOB},
    ]
}
LADDER = {
    "name": "p0",
    "levels": [
        {"wait": "5m", "targets": [{"user": "alice"}]},
        {"wait": "10m", "targets": [{"user": "bob"}]},
    ],
}
# P0 pages Slack and texts alice and bob (and carol, no user); P1 texts bob only.
ROUTING: dict[str, Any] = {
    "receivers": [
        {"name": "default", "console": ["stdout"]},
        {
            "name": "critical",
            "slack": ["#incidents-critical"],
            "sms": [ALICE, BOB, CAROL],
            "escalation_policy": "p0",
        },
        {"name": "bob", "sms": [BOB]},
    ],
    "route": {
        "receiver": "default",
        "routes": [
            {"matchers": ['severity="P0"'], "receiver": "critical"},
            {"matchers": ['severity="P1"'], "receiver": "bob"},
        ],
    },
}


@dataclass
class Stage:
    pipe: Pipeline
    slack: FakeSlack
    twilio: FakeTwilio

    @property
    def client(self) -> TestClient:
        return self.pipe.client

    def page(self, service: str, severity: str = "P0") -> int:
        self.pipe.post(alert(service, f"{service}-down", recent(1), severity))
        [incident] = [i for i in self.pipe.live() if service in i["services"]]
        return int(incident["id"])

    def texts(self, phone: str) -> list[str]:
        return [m["Body"] for m in self.twilio.messages() if m["To"] == phone]

    def wait_texts(self, phone: str, count: int) -> list[str]:
        wait_until(f"{count} texts to {phone}", lambda: len(self.texts(phone)) >= count)
        return self.texts(phone)

    def sms(
        self, sender: str, body: str, *, signature: str | None = None, url: str = BASE
    ) -> httpx.Response:
        form = {
            "MessageSid": "SM" + "0" * 32,
            "AccountSid": self.twilio.account_sid,
            "From": sender,
            "To": FROM_NUMBER,
            "Body": body,
            "NumMedia": "0",
        }
        return self._signed(SMS_PATH, form, signature, url)

    def press(self, callee: str, incident_id: int | str, digits: str) -> httpx.Response:
        form = {
            "CallSid": "CA" + "0" * 32,
            "AccountSid": self.twilio.account_sid,
            "From": FROM_NUMBER,
            "To": callee,
            "Called": callee,
            "Digits": digits,
        }
        # The URL the voice channel gave Twilio, under notify.public_url.
        path = f"{VOICE_PATH}?incident={incident_id}"
        return self._signed(path, form, None, "http://incidents.test")

    def _signed(
        self, path: str, form: dict[str, str], signature: str | None, url: str
    ) -> httpx.Response:
        if signature is None:
            signature = RequestValidator(self.twilio.auth_token).compute_signature(url + path, form)
        headers = {"X-Twilio-Signature": signature} if signature else {}
        return self.client.post(path, data=form, headers=headers)

    def click(
        self,
        slack_user: str,
        action: str,
        incident_id: int,
        *,
        secret: str = SECRET,
        age: float = 0,
    ) -> httpx.Response:
        body = self.click_body(slack_user, action, incident_id)
        return self.client.post(SLACK_PATH, content=body, headers=slack_headers(body, secret, age))

    def click_body(self, slack_user: str, action: str, incident_id: int) -> str:
        """The form Slack posts for a button press."""
        payload = {
            "type": "block_actions",
            "user": {"id": slack_user, "username": slack_user.lower()},
            "actions": [
                {"action_id": action, "value": str(incident_id), "type": "button"},
            ],
            "container": {"type": "message", "message_ts": "1.2", "channel_id": "C1"},
            "channel": {"id": "C1"},
            "message": {"ts": "1.2"},
            "response_url": f"{self.slack.api_url}respond",
        }
        return urlencode({"payload": json.dumps(payload)})

    def state(self, incident_id: int) -> dict[str, Any]:
        return self.pipe.incident(incident_id)


def slack_headers(body: str, secret: str = SECRET, age: float = 0) -> dict[str, str]:
    """Headers as Slack signs an interaction request."""
    stamp = str(int(time.time() - age))
    base = f"v0:{stamp}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def start(
    db_url: str,
    client_for: Callable[..., TestClient],
    slack: FakeSlack,
    twilio: FakeTwilio,
    smtp: SmtpServer | None = None,
) -> Stage:
    """The service; with `smtp`, P0 pages also mail MAILBOX through that server."""
    routing, mail = ROUTING, {}
    if smtp is not None:
        receivers = [
            dict(r, email=[MAILBOX]) if r["name"] == "critical" else r for r in ROUTING["receivers"]
        ]
        routing = dict(ROUTING, receivers=receivers)
        mail = {
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
            "smtp_tls": "none",
            "smtp_from": "incidents@example.com",
        }
    client = client_for(
        db_url,
        routing=routing,
        **mail,
        slack_bot_token=slack.token,
        slack_api_url=slack.api_url,
        slack_signing_secret=SECRET,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from_number=FROM_NUMBER,
        twilio_api_url=twilio.url,
        correlation={"open_hold_seconds": 0},
        notify={"public_url": "http://incidents.test"},
        pipeline={"escalation_sweep_seconds": 60},
    )
    pipe = Pipeline(client, db_url)
    pipe.load_graph()
    for path, body in (
        ("/api/v1/users", USERS),
        ("/api/v1/escalation-policies", {"policies": [LADDER]}),
    ):
        response = client.put(path, json=body, headers=AUTH)
        assert response.status_code == 200, response.text
    return Stage(pipe, slack, twilio)
