"""A number Twilio refuses for good is remembered: the next incident does not text it, the
incident says so once, and START (for a STOP) or clearing the mark restores it. The real
app on uvicorn, the notify worker run by hand, the real twilio Client against the fake
Twilio; on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from incidents.acting import TWILIO_SMS_PATH
from tests.conftest import AUTH
from tests.notify import test_twilio_status
from tests.notify.fake_twilio import FROM_NUMBER, FakeTwilio
from tests.notify.test_outbox import incident, queue, row
from tests.notify.test_twilio_status import Service, failures
from tests.notify.twilio_webhooks import post_signed

# The app on uvicorn and the fake Twilio, as the status callback tests have them.
fake = test_twilio_status.fake
service = test_twilio_status.service

PHONE = "+15551239876"
OTHER = "+15551230001"


def twilio_requests(fake: FakeTwilio, number: str) -> int:
    return sum(1 for r in fake.requests if r.form.get("To") == number)


def page(service: Service, target: str = PHONE) -> tuple[int, int]:
    """A new incident with one SMS to `target`, handed to the worker; (incident, row)."""
    iid = incident(service.sessions)
    nid = queue(service.sessions, iid, "sms", target)
    # A skipped row is not handed to the channel: the worker handled 0 or 1.
    assert service.worker.run_once("sms") <= 1
    return iid, nid


def reply(service: Service, fake: FakeTwilio, body: str) -> None:
    """An SMS from PHONE to our number, signed as Twilio signs it."""
    form = {
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": fake.account_sid,
        "From": PHONE,
        "To": FROM_NUMBER,
        "Body": body,
        "NumMedia": "0",
    }
    answer = post_signed(fake.auth_token, f"{service.url}{TWILIO_SMS_PATH}", form)
    assert answer.status_code == 200, answer.text


def marks(service: Service) -> list[dict[str, object]]:
    answer = httpx.get(f"{service.url}/api/v1/unreachable-targets", headers=AUTH)
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, object]] = answer.json()
    return listed


def test_a_number_that_sent_stop_is_not_texted_again_until_start(
    service: Service, fake: FakeTwilio
) -> None:
    fake.fail_number(PHONE, 21610)
    first, learned = page(service)
    assert row(service.sessions, learned).status == "failed"
    [said] = failures(service, first)
    assert "cannot be reached" in said and "21610" in said
    assert "opted out" in said and "START" in said
    [mark] = marks(service)
    assert (mark["channel"], mark["target"], mark["code"], mark["opted_out"]) == (
        "sms",
        PHONE,
        21610,
        True,
    )

    # The next incident: no request to Twilio, the row says why, the timeline says so once.
    asked = twilio_requests(fake, PHONE)
    second, skipped = page(service)
    again = queue(service.sessions, second, "sms", PHONE, key="entry:2")
    assert service.worker.run_once("sms") == 0
    assert twilio_requests(fake, PHONE) == asked
    for nid in (skipped, again):
        stored = row(service.sessions, nid)
        assert (stored.status, stored.attempts) == ("unreachable", 0)
        assert "opted out of SMS" in stored.error and "START" in stored.error
    [told] = failures(service, second)
    assert f"sms notifications to {PHONE} are skipped" in told
    listed = service.notifications(second)
    assert [(n["status"], n["unreachable"]) for n in listed] == [("unreachable", True)] * 2
    # Another number is texted as before.
    _, other = page(service, OTHER)
    assert row(service.sessions, other).status == "sent"

    # START by reply clears it, as it clears a STOP sent by reply.
    fake.fail_number(PHONE, None)
    reply(service, fake, "START")
    assert marks(service) == []
    _, restored = page(service)
    assert row(service.sessions, restored).status == "sent"
    assert twilio_requests(fake, PHONE) == asked + 1


def test_a_stop_by_reply_and_21610_are_one_opt_out(service: Service, fake: FakeTwilio) -> None:
    reply(service, fake, "STOP")
    [mark] = marks(service)
    assert mark["opted_out"] and "replied STOP" in str(mark["reason"])
    _, skipped = page(service)
    assert row(service.sessions, skipped).status == "unreachable"
    assert twilio_requests(fake, PHONE) == 0
    # Clearing it by the API is the same as START.
    cleared = httpx.delete(f"{service.url}/api/v1/unreachable-targets/sms/{PHONE}", headers=AUTH)
    assert cleared.status_code == 204, cleared.text
    _, restored = page(service)
    assert row(service.sessions, restored).status == "sent"


@pytest.mark.parametrize(
    ("code", "meaning"),
    [(21211, "not a valid phone number"), (30006, "landline or unreachable carrier")],
)
def test_an_invalid_number_or_a_landline_is_marked_until_cleared(
    service: Service, fake: FakeTwilio, code: int, meaning: str
) -> None:
    fake.fail_number(PHONE, code)
    first, learned = page(service)
    assert row(service.sessions, learned).status == "failed"
    [said] = failures(service, first)
    assert f"code {code}" in said and "marked unreachable" in said
    [mark] = marks(service)
    assert (mark["code"], mark["incident_id"], mark["opted_out"]) == (code, first, False)
    assert meaning in str(mark["reason"])

    second, skipped = page(service)
    assert twilio_requests(fake, PHONE) == 1
    stored = row(service.sessions, skipped)
    assert stored.status == "unreachable"
    assert "marked unreachable by sms since" in stored.error and str(code) in stored.error
    [told] = failures(service, second)
    assert "are skipped" in told and f"/api/v1/unreachable-targets/sms/{PHONE}" in told
    [listed] = service.notifications(second)
    assert (listed["status"], listed["unreachable"]) == ("unreachable", True)
    postmortem = httpx.get(f"{service.url}/api/v1/incidents/{second}/postmortem", headers=AUTH)
    assert "1 sms notification(s) were skipped" in postmortem.text

    # The number is fixed: clearing the mark texts it again.
    fake.fail_number(PHONE, None)
    url = f"{service.url}/api/v1/unreachable-targets/sms/{PHONE}"
    assert httpx.delete(url, headers=AUTH).status_code == 204
    assert marks(service) == []
    _, restored = page(service)
    assert row(service.sessions, restored).status == "sent"
    [listed] = service.notifications(second)
    assert listed["unreachable"] is False
    # Nothing left to clear, and a channel that has no marks: clear 4xx answers.
    gone = httpx.delete(url, headers=AUTH)
    assert gone.status_code == 404 and PHONE in gone.json()["message"]
    wrong = httpx.delete(f"{service.url}/api/v1/unreachable-targets/pager/{PHONE}", headers=AUTH)
    assert wrong.status_code == 422 and "channel" in wrong.text


@pytest.mark.parametrize(("status", "code"), [(400, 30003), (429, 20429)])
def test_a_passing_failure_is_retried_and_marks_nothing(
    service: Service, fake: FakeTwilio, status: int, code: int
) -> None:
    fake.fail_next(1, status=status, code=code, retry_after="0")
    _, waiting = page(service)
    stored = row(service.sessions, waiting)
    assert (stored.status, stored.attempts) == ("pending", 1)
    assert marks(service) == []
    _, next_one = page(service)
    assert row(service.sessions, next_one).status == "sent"
    assert twilio_requests(fake, PHONE) == 2


def test_a_landline_reported_by_callback_is_marked(service: Service, fake: FakeTwilio) -> None:
    first, nid = page(service)
    sent = row(service.sessions, nid)
    assert sent.status == "sent"
    answer = fake.callback(sent.provider_id, "undelivered", error_code=30006)
    assert answer.status_code == 200, answer.text
    [mark] = marks(service)
    assert (mark["code"], mark["incident_id"]) == (30006, first)
    _, skipped = page(service)
    assert row(service.sessions, skipped).status == "unreachable"
    assert twilio_requests(fake, PHONE) == 1
