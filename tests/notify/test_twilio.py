"""SMS and voice through the real Twilio client, against a local server that acts as Twilio.

Also the GSM-7 / UCS-2 segment arithmetic the SMS text is fitted with.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidents.notify import gsm
from incidents.notify.base import Notification, build
from incidents.notify.channels import sms, voice
from incidents.notify.channels.twilio_client import RoutedHttpClient
from tests.notify.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

TO = "+15551230000"
PUBLIC = "https://incidents.example.org"
BASIC = "".join(sorted(gsm.GSM7_BASIC))
EXTENDED = "".join(sorted(gsm.GSM7_EXTENSION))


def note(**changes: Any) -> Notification:
    """The PostgresDown page the tests send, with changes."""
    base = Notification(
        delivery_id=41,
        incident_id=12,
        event="opened",
        severity="P0",
        status="open",
        title="PostgresDown",
        services=("database-postgres", "orders", "payments"),
        root_cause="database-postgres",
        root_reason="3 dependants firing",
        blast_radius=("orders", "payments", "web"),
        url="https://incidents.example.org/incidents/12",
        target=TO,
        # The recipient's reply code for it (here the same number as the incident).
        reply_code=12,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- GSM-7 / UCS-2 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # 160 septets
        ("€" * 81, 2),  # 162 septets: 76 pairs in the first 153, five in the second
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("😀" * 35, 1),  # 70 UTF-16 units
        ("😀" * 36, 2),
        # An escape pair is never split: the euro moves to segment two and pushes one out.
        ("a" * 152 + "€" + "a" * 152, 3),
    ],
)
def test_segment_counts(text: str, expected: int) -> None:
    assert gsm.segments(text) == expected


def test_encoding_detection() -> None:
    assert gsm.is_gsm7("Reply '12a' to ack {x} [y] ~ | € ^ \\")
    assert gsm.is_gsm7(BASIC + EXTENDED)
    assert not gsm.is_gsm7("naïve")  # ï is not in GSM-7, ä is
    assert not gsm.is_gsm7("…")
    assert not gsm.is_gsm7("`")
    assert gsm.units("a€") == 3
    assert gsm.units("ж😀") == 3


@given(st.text(alphabet=BASIC + EXTENDED, max_size=700))
def test_gsm7_segments_within_bounds(text: str) -> None:
    assert gsm.is_gsm7(text)
    septets = len(text) + sum(c in gsm.GSM7_EXTENSION for c in text)
    assert gsm.units(text) == septets
    count = gsm.segments(text)
    if septets <= 160:
        assert count == 1
    else:
        # At most one septet per segment is lost to an escape pair that would straddle.
        assert math.ceil(septets / 153) <= count <= math.ceil(septets / 152)


@given(st.text(min_size=1, max_size=300).filter(lambda t: not gsm.is_gsm7(t)))
def test_ucs2_segments_within_bounds(text: str) -> None:
    code_units = len(text.encode("utf-16-le")) // 2
    assert gsm.units(text) == code_units
    count = gsm.segments(text)
    if code_units <= 70:
        assert count == 1
    else:
        assert math.ceil(code_units / 67) <= count <= math.ceil(code_units / 66)


@given(
    st.one_of(st.text(max_size=600), st.text(alphabet=BASIC + EXTENDED, max_size=600)),
    st.integers(min_value=1, max_value=3),
)
def test_fit_is_the_longest_prefix_that_fits(text: str, limit: int) -> None:
    fitted = gsm.fit(text, limit)
    assert gsm.segments(fitted) <= limit
    if gsm.segments(text) <= limit:
        assert fitted == text
        return
    mark = gsm.ellipsis_for(text)
    assert fitted.endswith(mark)
    kept = fitted[: -len(mark)]
    assert text.startswith(kept)
    # Shortening never changes the encoding, and one more character would not fit.
    assert gsm.is_gsm7(fitted) == gsm.is_gsm7(text)
    assert gsm.segments(text[: len(kept) + 1] + mark) > limit


def test_fit_rejects_zero_segments() -> None:
    with pytest.raises(ValueError):
        gsm.fit("x", 0)


# --- SMS -----------------------------------------------------------------------------


def test_sms_page_text_and_message_sid(fake: FakeTwilio) -> None:
    channel = build("sms", fake.settings())
    result = channel.send(note())
    assert result.ok and not result.error
    [request] = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    expected_auth = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert request.form == {
        "To": TO,
        "From": FROM_NUMBER,
        "Body": (
            "[P0] #12 PostgresDown on database-postgres (+3). Reply '12a' to ack, '12c' to close"
        ),
    }
    assert result.provider_id is not None and result.provider_id.startswith("SM")
    assert len(result.provider_id) == 34


def test_sms_resolved_has_no_reply_hint(fake: FakeTwilio) -> None:
    result = build("sms", fake.settings()).send(note(event="resolved", status="resolved"))
    assert result.ok
    assert fake.messages()[0]["Body"] == "RESOLVED #12 PostgresDown on database-postgres (+3)"


def test_sms_other_events_are_labelled(fake: FakeTwilio) -> None:
    channel = build("sms", fake.settings())
    channel.send(note(event="severity_raised", blast_radius=(), services=("db",), root_cause=None))
    channel.send(note(event="reopened", severity="P1"))
    bodies = [m["Body"] for m in fake.messages()]
    assert bodies[0] == "[P0 RAISED] #12 PostgresDown on db. Reply '12a' to ack, '12c' to close"
    assert bodies[1].startswith("[P1 REOPENED] #12 PostgresDown on database-postgres (+3).")


def test_sms_long_gsm_title_is_shortened_to_two_segments(fake: FakeTwilio) -> None:
    title = "Disk {nearly} full on [primary] " * 20
    assert build("sms", fake.settings()).send(note(title=title)).ok
    body = fake.messages()[0]["Body"]
    assert gsm.is_gsm7(body) and gsm.segments(body) == 2
    assert body.startswith("[P0] #12 Disk {nearly} full")
    assert body.endswith("... on database-postgres (+3). Reply '12a' to ack, '12c' to close")
    # Close to the budget: extension characters count twice and nothing more would fit.
    assert 300 <= gsm.units(body) <= 306


def test_sms_long_unicode_title_uses_ucs2_budget(fake: FakeTwilio) -> None:
    title = "Задержка репликации на основной базе данных 🚨 " * 5
    assert build("sms", fake.settings()).send(note(title=title)).ok
    body = fake.messages()[0]["Body"]
    assert not gsm.is_gsm7(body) and gsm.segments(body) == 2
    assert "…" in body and body.endswith("Reply '12a' to ack, '12c' to close")
    assert gsm.units(body) <= 134


def test_sms_overlong_service_name_still_fits(fake: FakeTwilio) -> None:
    huge = "svc-" + "x" * 400
    assert build("sms", fake.settings()).send(note(root_cause=huge)).ok
    body = fake.messages()[0]["Body"]
    assert gsm.segments(body) == 2 and body.endswith("...")
    assert body.startswith("[P0] #12 ... on svc-xxx")


def test_sms_template_override_and_broken_template(fake: FakeTwilio) -> None:
    custom = fake.settings(sms_template="{{ severity }}:{{ incident_id }}:{{ ack_code }}")
    assert build("sms", custom).send(note()).ok
    assert fake.messages()[0]["Body"] == "P0:12:12a"
    with pytest.raises(ValueError, match="sms template does not compile"):
        build("sms", fake.settings(sms_template="{% if %}"))
    with pytest.raises(ValueError, match="voice template does not compile"):
        build("voice", fake.settings(voice_template="{{ title "))


def test_templates_are_checked_at_build(fake: FakeTwilio) -> None:
    # The sandbox refuses attribute access that leads out of the template.
    with pytest.raises(ValueError, match="unsafe"):
        build("sms", fake.settings(sms_template="{{ title.__class__.__mro__ }}"))
    with pytest.raises(ValueError, match=r"reads unknown variable\(s\) tittle"):
        build("sms", fake.settings(sms_resolved_template="{{ tittle }}"))
    assert fake.requests == []


def test_template_failing_on_one_notification_falls_back_to_builtin(fake: FakeTwilio) -> None:
    channel = build(
        "sms", fake.settings(sms_template="{{ root_cause.upper() }} #{{ incident_id }}")
    )
    assert channel.send(note()).ok
    assert channel.send(note(root_cause=None, services=("db",), blast_radius=())).ok
    bodies = [m["Body"] for m in fake.messages()]
    assert bodies[0] == "DATABASE-POSTGRES #12"
    assert bodies[1] == "[P0] #12 PostgresDown on db. Reply '12a' to ack, '12c' to close"


@pytest.mark.parametrize(
    ("number", "code", "meaning"),
    [
        ("+15005550009", 21610, "STOP"),
        ("+15005550001", 21211, "not a valid phone number"),
        ("+15005550002", 21614, "not a mobile number"),
        ("+15005550003", 30006, "landline or unreachable carrier"),
    ],
)
def test_sms_unreachable_targets(fake: FakeTwilio, number: str, code: int, meaning: str) -> None:
    fake.fail_number(number, code)
    result = build("sms", fake.settings()).send(note(target=number))
    assert not result.ok and not result.retryable and result.target_unreachable
    assert result.error is not None and str(code) in result.error and meaning in result.error
    assert len(fake.requests) == 1


def test_sms_unreachable_handset_is_retryable(fake: FakeTwilio) -> None:
    fake.fail_number(TO, 30003)
    result = build("sms", fake.settings()).send(note())
    assert not result.ok and result.retryable and not result.target_unreachable
    assert result.error is not None and "30003" in result.error


def test_sms_rate_limit_honours_retry_after_and_sends_once(fake: FakeTwilio) -> None:
    fake.fail_next(1, status=429, code=20429, retry_after="7")
    channel = build("sms", fake.settings())
    limited = channel.send(note())
    assert not limited.ok and limited.retryable and limited.retry_after == 7.0
    assert "20429" in (limited.error or "")
    # One attempt per send: the notify worker owns retries.
    assert len(fake.requests) == 1
    assert channel.send(note()).ok
    assert len(fake.messages()) == 1


def test_sms_rate_limit_without_retry_after(fake: FakeTwilio) -> None:
    fake.fail_next(1, status=429, code=20429)
    result = build("sms", fake.settings()).send(note())
    assert result.retryable and result.retry_after is None


def test_sms_server_error_is_retryable(fake: FakeTwilio) -> None:
    fake.fail_next(1, status=503, code=20500, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    result = build("sms", fake.settings()).send(note())
    # A date in the past means "now".
    assert not result.ok and result.retryable and result.retry_after == 0.0
    assert len(fake.requests) == 1


def test_problem_details_errors_are_classified_too(fake: FakeTwilio) -> None:
    fake.fail_next(1, status=400, code=21610, problem=True)
    fake.fail_next(1, status=429, code=20429, retry_after="3", problem=True)
    channel = build("sms", fake.settings())
    stopped = channel.send(note())
    assert stopped.target_unreachable and not stopped.retryable
    assert "21610" in (stopped.error or "") and "problem details" in (stopped.error or "")
    limited = channel.send(note())
    assert limited.retryable and limited.retry_after == 3.0


def test_sms_bad_credentials_are_not_retried(fake: FakeTwilio) -> None:
    result = build("sms", fake.settings(auth_token="wrong")).send(note())
    assert not result.ok and not result.retryable and not result.target_unreachable
    assert "20003" in (result.error or "") and "authentication" in (result.error or "")
    assert fake.requests[0].status == 401


def test_sms_connection_refused_and_timeout_are_retryable(fake: FakeTwilio) -> None:
    refused = fake.settings(api_url=f"http://127.0.0.1:{closed_port()}")
    result = build("sms", refused).send(note())
    assert not result.ok and result.retryable and "unreachable" in (result.error or "")
    fake.delay = 1.0
    slow = build("sms", fake.settings(timeout_seconds=0.2)).send(note())
    assert not slow.ok and slow.retryable


def test_sms_unconfigured_sends_nothing(fake: FakeTwilio) -> None:
    result = build("sms", {"api_url": fake.url}).send(note())
    assert not result.ok and not result.retryable
    assert "account_sid" in (result.error or "") and "from_number" in (result.error or "")
    assert fake.requests == []


def test_route_keeps_twilio_urls_without_api_url() -> None:
    twilio_url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?x=1"
    assert RoutedHttpClient("", 5).route(twilio_url) == twilio_url
    routed = RoutedHttpClient("http://127.0.0.1:9000/proxy/", 5).route(twilio_url)
    assert routed == "http://127.0.0.1:9000/proxy/2010-04-01/Accounts/AC1/Messages.json?x=1"


# --- Voice ---------------------------------------------------------------------------


def test_voice_call_menu(fake: FakeTwilio) -> None:
    result = build("voice", fake.settings(public_url=PUBLIC + "/")).send(note())
    assert result.ok and result.provider_id is not None and result.provider_id.startswith("CA")
    [call] = fake.calls()
    assert call["To"] == TO and call["From"] == FROM_NUMBER
    root = ET.fromstring(call["Twiml"])
    assert root.tag == "Response"
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == f"{PUBLIC}/api/v1/integrations/twilio/voice?incident=12"
    says = [s.text or "" for s in gather.findall("Say")]
    assert len(says) == 2 and says[0] == says[1]
    assert "P0" in says[0] and "PostgresDown" in says[0] and "database-postgres" in says[0]
    assert "Press 1 to acknowledge, 2 to resolve, 3 to escalate now." in says[0]


def test_voice_escapes_markup_in_titles(fake: FakeTwilio) -> None:
    title = "Latency > 2s & errors <5xx>"
    assert build("voice", fake.settings(public_url=PUBLIC)).send(note(title=title)).ok
    gather = ET.fromstring(fake.calls()[0]["Twiml"]).find("Gather")
    assert gather is not None
    assert title in (gather.findtext("Say") or "")


def test_voice_without_public_url_reads_twice_without_menu(fake: FakeTwilio) -> None:
    assert build("voice", fake.settings()).send(note()).ok
    root = ET.fromstring(fake.calls()[0]["Twiml"])
    assert root.find("Gather") is None
    says = [s.text or "" for s in root.findall("Say")]
    assert len(says) == 2 and "PostgresDown" in says[0] and "Press 1" not in says[0]


def test_voice_resolved_has_no_menu(fake: FakeTwilio) -> None:
    channel = build("voice", fake.settings(public_url=PUBLIC))
    assert channel.send(note(event="resolved")).ok
    root = ET.fromstring(fake.calls()[0]["Twiml"])
    assert root.find("Gather") is None
    assert (root.findtext("Say") or "").startswith("Resolved: incident 12")


def test_voice_errors_are_classified(fake: FakeTwilio) -> None:
    fake.fail_number("+15005550001", 21211)
    channel = build("voice", fake.settings(public_url=PUBLIC))
    invalid = channel.send(note(target="+15005550001"))
    assert invalid.target_unreachable and not invalid.retryable
    fake.fail_next(1, status=500, code=20500)
    assert channel.send(note()).retryable
    assert fake.calls() == []


def test_registered_names() -> None:
    assert isinstance(build("sms", None), sms.SmsNotifier)
    assert isinstance(build("voice", None), voice.VoiceNotifier)
