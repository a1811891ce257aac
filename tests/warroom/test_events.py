"""Slack's Events API: the URL challenge, messages in a war room as timeline notes,
Slack's v0 signature and replay window, bots ignored, a retried event recorded once."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from tests.warroom.conftest import SIGNING_SECRET, Room

PATH = "/api/v1/integrations/slack/events"


def signed(body: bytes, at: float | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    base = b"v0:" + timestamp.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/json",
    }


def deliver(room: Room, payload: Any, **headers: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return room.client.post(PATH, content=body, headers={**signed(body), **headers})


def message(channel: str, text: str, event_id: str = "Ev01", **extra: Any) -> dict[str, Any]:
    event = {"type": "message", "channel": channel, "user": "U0ALICE", "text": text, **extra}
    return {"type": "event_callback", "event_id": event_id, "event": event}


def notes(room: Room, incident_id: int) -> list[dict[str, Any]]:
    return [e for e in room.incident(incident_id)["timeline"] if e["kind"] == "note"]


def war_room(room: Room) -> tuple[int, str]:
    incident_id = room.page("P0")
    room.send()
    [created] = room.slack.rooms
    return incident_id, created.id


def test_url_verification(room: Room) -> None:
    response = deliver(room, {"type": "url_verification", "challenge": "abc123"})
    assert response.status_code == 200, response.text
    assert response.json() == {"challenge": "abc123"}


def test_a_message_in_the_war_room_becomes_a_note(room: Room) -> None:
    incident_id, channel = war_room(room)
    response = deliver(room, message(channel, "rolling back the deploy"))
    assert response.status_code == 200, response.text
    assert response.json() == {"result": "recorded"}
    [note] = notes(room, incident_id)
    assert note["actor"] == "alice"
    assert note["data"]["via"] == "slack" and note["data"]["message"] == "rolling back the deploy"


def test_a_retried_event_is_recorded_once(room: Room) -> None:
    incident_id, channel = war_room(room)
    assert deliver(room, message(channel, "db failover started")).status_code == 200
    again = deliver(room, message(channel, "db failover started"), **{"X-Slack-Retry-Num": "1"})
    assert again.status_code == 200 and again.json() == {"result": "duplicate"}
    assert len(notes(room, incident_id)) == 1


def test_bots_edits_and_other_channels_are_ignored(room: Room) -> None:
    incident_id, channel = war_room(room)
    for payload in (
        message(channel, "posted by a bot", "Ev02", bot_id="B0001"),
        message(channel, "joined", "Ev03", subtype="channel_join"),
        message("C0999", "elsewhere", "Ev04"),
        {"type": "event_callback", "event_id": "Ev05", "event": {"type": "reaction_added"}},
    ):
        response = deliver(room, payload)
        assert response.status_code == 200, response.text
        assert response.json()["result"].startswith("ignored")
    assert notes(room, incident_id) == []


def test_unsigned_wrongly_signed_and_old_requests_are_refused(room: Room) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "x"}).encode()
    assert room.client.post(PATH, content=body).status_code == 403
    wrong = signed(body, secret="not-the-secret")
    assert room.client.post(PATH, content=body, headers=wrong).status_code == 403
    old = signed(body, at=time.time() - 6 * 60)
    response = room.client.post(PATH, content=body, headers=old)
    assert response.status_code == 403 and "5 minutes" in response.json()["message"]
    odd = {**signed(body), "X-Slack-Request-Timestamp": "soon"}
    assert room.client.post(PATH, content=body, headers=odd).status_code == 403


def test_bad_bodies_are_400_not_500(room: Room) -> None:
    for body in (b"not json", b"[1, 2]", b"\xff\xfe"):
        response = room.client.post(PATH, content=body, headers=signed(body))
        assert response.status_code == 400, response.text


def test_not_in_the_openapi_document(room: Room) -> None:
    paths = room.client.get("/openapi.json").json()["paths"]
    assert PATH not in paths
