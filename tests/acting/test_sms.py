"""SMS replies: signed by Twilio, read per recipient, acted on as the user, and answered
with TwiML; STOP and START; unknown senders and not-understood replies."""

from __future__ import annotations

import logging
import re

import pytest
from twilio.request_validator import RequestValidator

from tests.acting.stage import ALICE, BOB, CAROL, STRANGER, Stage
from tests.notify.test_routing_stage import notifications, wait_until


def code_in(text: str) -> str:
    match = re.search(r"Reply '(\d+)a' to ack, '(\d+)c' to close", text)
    assert match, text
    assert match[1] == match[2]
    return match[1]


def test_an_sms_ack_updates_the_slack_message(stage: Stage) -> None:
    iid = stage.page("database-postgres")
    wait_until("the slack page", lambda: len(stage.slack.top_level()) == 1)
    [text] = stage.wait_texts(ALICE, 1)
    assert code_in(text) == "1" and f"#{iid}" in text

    response = stage.sms(ALICE, " 1A ")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert f"Acknowledged #{iid} " in response.text and "<Message>" in response.text
    detail = stage.state(iid)
    assert detail["state"] == "acknowledged"
    assert detail["acknowledged_by"] == "alice (via sms)"
    [entry] = [e for e in detail["timeline"] if e["kind"] == "acknowledged"]
    assert entry["actor"] == "alice" and entry["data"]["via"] == "sms"
    wait_until("the edit", lambda: len(stage.slack.calls("chat.update")) >= 1)
    edit = stage.slack.calls("chat.update")[-1]
    assert "acknowledged" in edit.body["text"]
    buttons = [e["action_id"] for b in edit.body["blocks"] for e in b.get("elements", [])]
    assert "acknowledge" not in buttons and "resolve" in buttons

    again = stage.sms(ALICE, "1a")
    # The incident is still open and still alice's code 1: the refusal says why.
    assert f"cannot acknowledge incident {iid}: it is acknowledged" in again.text


def test_a_bad_or_missing_signature_is_refused(stage: Stage) -> None:
    iid = stage.page("database-postgres")
    stage.wait_texts(ALICE, 1)
    assert stage.sms(ALICE, "1a", signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    missing = stage.sms(ALICE, "1a", signature="")
    assert missing.status_code == 403 and "X-Twilio-Signature" in missing.json()["message"]
    # Signed for another host: with no public_url the URL it arrived on counts.
    elsewhere = stage.sms(ALICE, "1a", url="https://proxy.example.org")
    assert elsewhere.status_code == 403
    assert stage.state(iid)["state"] == "triggered"


def test_public_url_is_the_signed_address(stage: Stage) -> None:
    settings = stage.client.app.state.service.settings  # type: ignore[attr-defined]
    settings.public_url = "https://incidents.example.org/"
    iid = stage.page("database-postgres")
    stage.wait_texts(ALICE, 1)
    assert stage.sms(ALICE, "1a").status_code == 403
    ok = stage.sms(ALICE, "1a", url="https://incidents.example.org")
    assert ok.status_code == 200 and f"Acknowledged #{iid}" in ok.text


def test_codes_are_per_recipient_and_freed_on_resolve(stage: Stage) -> None:
    first = stage.page("search", "P1")  # bob only: his code 1
    [to_bob] = stage.wait_texts(BOB, 1)
    assert code_in(to_bob) == "1"
    second = stage.page("database-postgres")  # alice's 1, bob's 2
    assert code_in(stage.wait_texts(ALICE, 1)[0]) == "1"
    assert code_in(stage.wait_texts(BOB, 2)[1]) == "2"

    assert f"Acknowledged #{second}" in stage.sms(BOB, "2a").text
    assert f"Resolved #{first}" in stage.sms(BOB, "1c").text
    assert stage.state(first)["state"] == "resolved"
    assert stage.state(second)["acknowledged_by"] == "bob (via sms)"
    # Bob's code 1 is free again: his next incident gets it.
    third = stage.page("payments", "P1")
    texts = stage.wait_texts(BOB, 4)  # the resolved text, then the new page
    [page] = [t for t in texts if f"#{third} " in t]
    assert code_in(page) == "1"


def test_by_id_last_and_all(stage: Stage) -> None:
    one = stage.page("database-postgres")
    stage.wait_texts(ALICE, 1)
    two = stage.page("search")
    stage.wait_texts(ALICE, 2)
    assert f"Acknowledged #{one}" in stage.sms(ALICE, f"ack {one}").text
    # A bare `a`: the last incident texted to this phone.
    assert f"Acknowledged #{two}" in stage.sms(ALICE, "a").text
    both = stage.sms(ALICE, "CC").text
    assert f"Resolved #{one}" in both and f"Resolved #{two}" in both
    assert {stage.state(i)["state"] for i in (one, two)} == {"resolved"}
    assert "No open incident" in stage.sms(ALICE, "aa").text


def test_resolve_by_id(stage: Stage) -> None:
    iid = stage.page("database-postgres")
    stage.wait_texts(BOB, 1)
    assert f"Resolved #{iid}" in stage.sms(BOB, f"resolve {iid}").text
    assert stage.state(iid)["state"] == "resolved"


def test_stop_then_start(stage: Stage) -> None:
    assert stage.sms(ALICE, "Stop").text.endswith("<Response />")
    iid = stage.page("database-postgres")
    stage.wait_texts(BOB, 1)

    def alice_skipped() -> bool:
        mine = [n for n in notifications(stage.pipe, iid) if n["target"] == ALICE]
        return bool(mine) and mine[0]["status"] == "unreachable"

    wait_until("alice's text to be skipped", alice_skipped)
    [mine] = [n for n in notifications(stage.pipe, iid) if n["target"] == ALICE]
    assert "opted out of SMS" in mine["error"] and "replied STOP" in mine["error"]
    assert mine["unreachable"] and mine["attempts"] == 0
    assert stage.texts(ALICE) == []
    kinds = [e["kind"] for e in stage.state(iid)["timeline"]]
    assert "notification_failed" in kinds

    assert stage.sms(ALICE, " start ").status_code == 200
    stage.page("search")
    [text] = stage.wait_texts(ALICE, 1)
    assert code_in(text) == "1"


def test_not_understood_is_answered_then_rate_limited(stage: Stage) -> None:
    answers = [stage.sms(ALICE, "what is this?").text for _ in range(4)]
    for answer in answers[:3]:
        assert "Not understood" in answer and "12a" in answer and "aa" in answer
    assert "<Message>" not in answers[3]
    # Another number has its own allowance.
    assert "Not understood" in stage.sms(BOB, "hello").text


def test_an_unknown_sender_gets_no_reply(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    iid = stage.page("database-postgres")
    stage.wait_texts(CAROL, 1)  # texted, but not a user
    with caplog.at_level(logging.WARNING, logger="incidents.acting.sms_handler"):
        for sender in (CAROL, STRANGER):
            response = stage.sms(sender, "1a")
            assert response.status_code == 200
            assert "<Message>" not in response.text
    assert stage.state(iid)["state"] == "triggered"
    logged = [r.getMessage() for r in caplog.records if r.name == "incidents.acting.sms_handler"]
    for sender in (CAROL, STRANGER):
        line = f"sms: a reply from {sender}, which is no user's phone, was ignored"
        assert line in logged
    # Nor is anything texted back to them later: carol has only her page.
    assert len(stage.texts(CAROL)) == 1 and stage.texts(STRANGER) == []


def test_bad_forms_are_never_a_500(stage: Stage) -> None:
    token = stage.twilio.auth_token
    url = "http://testserver/api/v1/integrations/twilio/sms"
    raw = b"\xff\xfe=1"
    bad = stage.client.post(
        "/api/v1/integrations/twilio/sms",
        content=raw,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": RequestValidator(token).compute_signature(url, {}),
        },
    )
    assert bad.status_code == 400
    empty = stage.sms("", "1a")
    assert empty.status_code == 200 and "<Message>" not in empty.text
