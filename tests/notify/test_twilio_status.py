"""Twilio delivery status callbacks, end to end: the real app served by uvicorn, the notify
worker sending through the real twilio Client to the fake Twilio, and the fake posting
signed status callbacks back to the app, as Twilio does."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from incidents.api.app import create_app
from incidents.config import Settings
from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.exceptions import Unavailable
from incidents.notify import delivery_status, outbox
from incidents.notify.delivery_status import Report, Verdict
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.setup import make_notify_worker
from incidents.notify.worker import NotifyWorker
from tests.conftest import AUTH, make_settings
from tests.notify.fake_twilio import FROM_NUMBER, FakeTwilio
from tests.notify.test_outbox import incident, queue, row

PHONE = "+15551230000"
PATH = "/api/v1/notify/twilio/status"
MAX_ATTEMPTS = 3


@dataclass
class Service:
    """The app on a loopback port, its database, and a notify worker run by hand."""

    url: str
    settings: Settings
    sessions: sessionmaker[Session]
    worker: NotifyWorker

    def notifications(self, incident_id: int) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/incidents/{incident_id}/notifications"
        response = httpx.get(url, headers=AUTH)
        assert response.status_code == 200, response.text
        data: list[dict[str, object]] = response.json()
        return data


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def service(db_url: str, fake: FakeTwilio) -> Iterator[Service]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(
        db_url,
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_from_number=FROM_NUMBER,
        twilio_api_url=fake.url,
        # The worker is run by hand, so each test says when a send happens.
        notify={"public_url": url, "enabled": False, "max_attempts": MAX_ATTEMPTS},
    )
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield Service(url, settings, sessions, make_notify_worker(sessions, settings))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        engine.dispose()


def send(service: Service, channel: str, *, target: str = PHONE) -> tuple[int, int, str]:
    """Queue one notification and let the worker send it; its incident, id and SID."""
    iid = incident(service.sessions)
    nid = queue(service.sessions, iid, channel, target)
    assert service.worker.run_once(channel) == 1
    sent = row(service.sessions, nid)
    assert sent.status == "sent", sent.error
    assert isinstance(sent.provider_id, str)
    return iid, nid, sent.provider_id


def make_due(service: Service, nid: int) -> None:
    with service.sessions.begin() as session:
        session.execute(
            NOTIFICATIONS.update().where(NOTIFICATIONS.c.id == nid).values(not_before=utcnow())
        )


def failures(service: Service, incident_id: int) -> list[str]:
    with service.sessions() as session:
        return list(
            session.scalars(
                sa.text("SELECT message FROM timeline WHERE incident_id = :i AND kind = :k"),
                {"i": incident_id, "k": "notification_failed"},
            )
        )


def test_sms_delivered_is_stored_and_listed(service: Service, fake: FakeTwilio) -> None:
    iid, nid, sid = send(service, "sms")
    [message] = fake.messages()
    assert message["StatusCallback"] == f"{service.url}{PATH}?notification={nid}"
    for status in ("queued", "sent", "delivered"):
        answer = fake.callback(sid, status)
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == "stored"
    # Out of order: a late `sent` never takes `delivered` back.
    late = fake.callback(sid, "sent")
    assert late.status_code == 200 and late.json()["result"] == "ignored"
    assert "does not move past delivered" in late.json()["reason"]
    done = row(service.sessions, nid)
    assert (done.status, done.provider_status, done.error) == ("sent", "delivered", None)
    [listed] = service.notifications(iid)
    assert (listed["status"], listed["provider_status"]) == ("sent", "delivered")
    assert failures(service, iid) == []


def test_unreachable_handset_is_requeued_and_sent_once_more(
    service: Service, fake: FakeTwilio
) -> None:
    iid, nid, first = send(service, "sms")
    before = utcnow()
    answer = fake.callback(first, "undelivered", error_code=30003)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "requeued"
    waiting = row(service.sessions, nid)
    assert (waiting.status, waiting.provider_status) == ("pending", "undelivered")
    assert "code 30003" in waiting.error and "unreachable destination handset" in waiting.error
    assert waiting.not_before > before
    # Twilio's retry of the same callback changes nothing: no second requeue.
    again = fake.callback(first, "undelivered", error_code=30003)
    assert again.status_code == 200 and again.json()["result"] == "ignored"
    assert row(service.sessions, nid).not_before == waiting.not_before
    assert service.worker.run_once("sms") == 0  # the backoff holds it
    make_due(service, nid)
    assert service.worker.run_once("sms") == 1
    assert service.worker.run_once("sms") == 0
    assert len(fake.messages()) == 2
    resent = row(service.sessions, nid)
    assert resent.status == "sent" and resent.attempts == 2
    second = resent.provider_id
    assert second != first
    # A late word on the first message is about a send that is over.
    stale = fake.callback(first, "delivered")
    assert stale.json()["result"] == "ignored" and first in stale.json()["reason"]
    assert fake.callback(second, "delivered").json()["result"] == "stored"
    assert row(service.sessions, nid).provider_status == "delivered"
    assert len(fake.messages()) == 2
    assert failures(service, iid) == []


def test_landline_fails_at_once_with_one_timeline_entry(service: Service, fake: FakeTwilio) -> None:
    iid, nid, sid = send(service, "sms")
    answer = fake.callback(sid, "undelivered", error_code=30006)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "failed"
    for _ in range(2):  # duplicates
        assert fake.callback(sid, "undelivered", error_code=30006).json()["result"] == "ignored"
    failed = row(service.sessions, nid)
    assert (failed.status, failed.provider_status) == ("failed", "undelivered")
    assert "code 30006" in failed.error and "landline or unreachable carrier" in failed.error
    [entry] = failures(service, iid)
    assert f"sms notification to {PHONE} cannot be reached" in entry and "30006" in entry
    assert service.worker.run_once("sms") == 0
    assert len(fake.messages()) == 1
    [listed] = service.notifications(iid)
    assert (listed["status"], listed["provider_status"]) == ("failed", "undelivered")


def test_retryable_failure_after_the_last_attempt_fails(service: Service, fake: FakeTwilio) -> None:
    iid, nid, sid = send(service, "sms")
    with service.sessions.begin() as session:
        session.execute(
            NOTIFICATIONS.update().where(NOTIFICATIONS.c.id == nid).values(attempts=MAX_ATTEMPTS)
        )
    assert fake.callback(sid, "failed", error_code=30008).json()["result"] == "failed"
    [entry] = failures(service, iid)
    assert f"failed after {MAX_ATTEMPTS} attempt(s)" in entry and "30008" in entry
    assert "cannot be reached" not in entry


def test_voice_no_answer_is_called_again(service: Service, fake: FakeTwilio) -> None:
    iid, nid, sid = send(service, "voice")
    [created] = [r for r in fake.requests if r.path.endswith("/Calls.json")]
    assert created.form["StatusCallback"] == f"{service.url}{PATH}?notification={nid}"
    assert created.form["StatusCallbackMethod"] == "POST"
    assert created.values["StatusCallbackEvent"] == ["answered", "completed"]
    assert fake.callback(sid, "ringing").json()["result"] == "stored"
    answer = fake.callback(sid, "no-answer")
    assert answer.status_code == 200 and answer.json()["result"] == "requeued"
    waiting = row(service.sessions, nid)
    assert (waiting.status, waiting.provider_status) == ("pending", "no-answer")
    assert "call no-answer" in waiting.error and "nobody answered" in waiting.error
    make_due(service, nid)
    assert service.worker.run_once("voice") == 1
    second = row(service.sessions, nid).provider_id
    assert second is not None and second != sid
    assert fake.callback(second, "in-progress").json()["result"] == "stored"
    assert fake.callback(second, "completed").json()["result"] == "stored"
    assert row(service.sessions, nid).provider_status == "completed"
    assert len(fake.calls()) == 2
    assert failures(service, iid) == []


def test_voice_number_that_does_not_exist_fails(service: Service, fake: FakeTwilio) -> None:
    iid, nid, sid = send(service, "voice")
    answer = fake.callback(sid, "failed", sip_response_code=404)
    assert answer.json()["result"] == "failed"
    assert "SIP 404" in row(service.sessions, nid).error
    [entry] = failures(service, iid)
    assert "cannot be reached" in entry


def test_a_missing_or_wrong_signature_is_refused(service: Service, fake: FakeTwilio) -> None:
    _, nid, sid = send(service, "sms")
    missing = fake.callback(sid, "undelivered", error_code=30006, signature="")
    assert missing.status_code == 403
    assert missing.json()["error"] == "forbidden"
    assert missing.json()["field"] == "X-Twilio-Signature"
    assert "missing X-Twilio-Signature" in missing.json()["message"]
    wrong = fake.callback(sid, "undelivered", error_code=30006, signature="bm90IGl0")
    assert wrong.status_code == 403
    assert "does not match" in wrong.json()["message"]
    assert f"{service.url}{PATH}?notification={nid}" in wrong.json()["message"]
    # Signed with another auth token.
    url = f"{service.url}{PATH}?notification={nid}"
    form = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30006"}
    forged = RequestValidator("another-token").compute_signature(url, form)
    assert fake.post_signed(url, form, signature=forged).status_code == 403
    # Signed for another notification than the one the URL names.
    elsewhere = RequestValidator(fake.auth_token).compute_signature(url + "1", form)
    assert fake.post_signed(url, form, signature=elsewhere).status_code == 403
    assert row(service.sessions, nid).status == "sent"


def test_an_unknown_notification_is_a_404(service: Service, fake: FakeTwilio) -> None:
    _, _, sid = send(service, "sms")
    answer = fake.callback(sid, "delivered", url=f"{service.url}{PATH}?notification=987654")
    assert answer.status_code == 404
    assert answer.json()["field"] == "notification"
    assert "no notification 987654" in answer.json()["message"]
    bad = fake.callback(sid, "delivered", url=f"{service.url}{PATH}?notification=x")
    assert bad.status_code == 422 and bad.json()["field"] == "notification"


def test_a_form_without_the_status_is_a_422(service: Service, fake: FakeTwilio) -> None:
    _, nid, sid = send(service, "sms")
    answer = fake.callback(sid, "delivered", omit=("MessageStatus",))
    assert answer.status_code == 422
    body = answer.json()
    assert (body["error"], body["field"]) == ("validation_error", "MessageStatus")
    assert body["message"].startswith("MessageStatus: missing")
    bad_code = fake.callback(sid, "undelivered", error_code=30003, omit=("MessageSid",))
    assert bad_code.status_code == 422 and bad_code.json()["field"] == "MessageSid"
    assert row(service.sessions, nid).provider_status is None


def test_an_unknown_status_is_ignored(service: Service, fake: FakeTwilio) -> None:
    _, nid, sid = send(service, "sms")
    answer = fake.callback(sid, "partially_delivered")
    assert answer.status_code == 200 and answer.json()["result"] == "ignored"
    assert row(service.sessions, nid).provider_status is None


def test_without_twilio_the_callback_is_off(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(sqlite_url)
    # No bearer token needed to reach it; no Twilio auth token to check a signature with.
    answer = client.post(f"{PATH}?notification=1", data={"MessageStatus": "delivered"})
    assert answer.status_code == 404
    assert "twilio_auth_token is not set" in answer.json()["message"]
    # Only the callback itself skips the token.
    assert client.get(f"{PATH}?notification=1").status_code == 401


def test_a_callback_racing_the_record_of_its_send_is_retried_later(
    service: Service,
) -> None:
    iid = incident(service.sessions)
    nid = queue(service.sessions, iid, "sms", PHONE)
    [claimed] = outbox.claim(service.sessions, "sms", lease=timedelta(seconds=60))
    report = Report("message", "SM" + "f" * 32, "undelivered", error_code=30006)
    with pytest.raises(Unavailable, match="being sent right now"):
        delivery_status.apply(service.sessions, nid, report, max_attempts=MAX_ATTEMPTS)
    assert row(service.sessions, nid).status == "sending" and claimed.id == nid


@pytest.mark.parametrize(
    ("report", "verdict"),
    [
        (Report("message", "SM1", "delivered"), Verdict.PROGRESS),
        (Report("message", "SM1", "undelivered", error_code=30003), Verdict.RETRY),
        (Report("message", "SM1", "undelivered", error_code=30001), Verdict.RETRY),
        (Report("message", "SM1", "failed", error_code=30008), Verdict.RETRY),
        (Report("message", "SM1", "undelivered"), Verdict.RETRY),
        (Report("message", "SM1", "undelivered", error_code=30005), Verdict.UNREACHABLE),
        (Report("message", "SM1", "undelivered", error_code=30006), Verdict.UNREACHABLE),
        (Report("message", "SM1", "failed", error_code=21610), Verdict.UNREACHABLE),
        (Report("message", "SM1", "failed", error_code=21211), Verdict.UNREACHABLE),
        (Report("message", "SM1", "failed", error_code=21614), Verdict.UNREACHABLE),
        (Report("message", "SM1", "undelivered", error_code=30007), Verdict.FAIL),
        (Report("message", "SM1", "canceled"), Verdict.FAIL),
        (Report("call", "CA1", "completed"), Verdict.PROGRESS),
        (Report("call", "CA1", "busy"), Verdict.RETRY),
        (Report("call", "CA1", "failed", sip_response_code=503), Verdict.RETRY),
        (Report("call", "CA1", "failed", error_code=13224), Verdict.UNREACHABLE),
    ],
)
def test_classification(report: Report, verdict: Verdict) -> None:
    outcome = delivery_status.classify(report)
    assert outcome is not None and outcome.verdict is verdict
    assert delivery_status.classify(Report("call", "CA1", "delivered")) is None
