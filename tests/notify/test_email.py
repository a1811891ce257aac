"""The email channel against a real SMTP server (aiosmtpd) in the test process."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from incidents.notify.base import Notification, SendResult, build
from incidents.notify.channels.email import EmailNotifier, EmailSettings
from tests.notify.smtp_server import HOST, CertPair, SmtpServer, free_port, self_signed_cert

TARGET = "oncall@example.com"


def notification(**changes: Any) -> Notification:
    """An `opened` notification for incident #12, with changes."""
    base = Notification(
        delivery_id=1,
        incident_id=12,
        event="opened",
        severity="P0",
        status="open",
        title="PostgresDown on database-postgres",
        services=("database-postgres", "api"),
        root_cause="database-postgres",
        root_reason="PostgresDown firing on the root of the blast radius",
        blast_radius=("api", "checkout"),
        url="/incidents/12",
        target=TARGET,
        details=("alert joined: HighLatency on api",),
    )
    return dataclasses.replace(base, **changes)


def channel(server: SmtpServer | None = None, **settings: Any) -> EmailNotifier:
    """The email channel, built through the registry, pointed at the test server."""
    values: dict[str, Any] = {
        "host": HOST,
        "port": server.port if server else free_port(),
        "tls": "none",
        "sender": "Incidents <incidents@alerts.example.org>",
        "timeout_seconds": 5,
        "public_url": "https://incidents.example.org/",
    }
    values.update(settings)
    notifier = build("email", values)
    assert isinstance(notifier, EmailNotifier)
    return notifier


def parts(message: EmailMessage) -> dict[str, str]:
    """The text/plain and text/html bodies of a received message, by subtype."""
    bodies = [part for part in message.iter_parts() if part.get_content_maintype() == "text"]
    return {part.get_content_subtype(): part.get_content() for part in bodies}


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> CertPair:
    """One self-signed certificate for the module's TLS servers."""
    return self_signed_cert(tmp_path_factory.mktemp("smtp-cert"))


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    """A plain SMTP server, no TLS, no AUTH."""
    with SmtpServer() as running:
        yield running


def test_first_mail_has_both_parts_subject_ids_and_starts_the_thread(
    server: SmtpServer,
) -> None:
    n = notification(status="acknowledged")
    result = channel(server).send(n)

    assert result.ok, result.error
    [received] = server.messages
    message = received.message
    assert message["Subject"] == "[P0] #12 PostgresDown on database-postgres"
    assert message["X-Incident-Id"] == "12"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["To"] == TARGET
    assert message["In-Reply-To"] is None and message["References"] is None
    message_id = message["Message-ID"]
    assert message_id.startswith("<") and message_id.endswith("@alerts.example.org>")
    assert result.provider_id == message_id
    assert result.thread == {"message_id": message_id}
    # The envelope uses the bare address, the header keeps the display name.
    assert received.sender == "incidents@alerts.example.org"
    assert received.recipients == [TARGET]
    assert message["From"] == "Incidents <incidents@alerts.example.org>"
    assert message.get_content_type() == "multipart/alternative"
    bodies = parts(message)
    assert list(bodies) == ["plain", "html"]
    facts = [n.title, n.status, str(n.root_cause), str(n.root_reason), *n.services]
    facts += [*n.blast_radius, *n.details]
    for body in bodies.values():
        # The relative link is made absolute with public_url.
        for fact in [*facts, "https://incidents.example.org/incidents/12"]:
            assert fact in body, (fact, body)
    assert 'href="https://incidents.example.org/incidents/12"' in bodies["html"]


def test_second_mail_to_the_same_recipient_replies_in_the_thread(server: SmtpServer) -> None:
    email = channel(server)
    first = email.send(notification())
    assert first.ok and first.provider_id

    second = email.send(
        notification(event="resolved", status="resolved", thread=first.thread, delivery_id=2)
    )

    assert second.ok, second.error
    assert second.provider_id != first.provider_id
    # The thread is still anchored on the first mail.
    assert second.thread == first.thread
    reply = server.messages[1].message
    assert reply["Message-ID"] == second.provider_id
    assert reply["In-Reply-To"] == first.provider_id
    assert reply["References"] == first.provider_id
    assert reply["Subject"] == "RESOLVED: [P0] #12 PostgresDown on database-postgres"


def test_stored_references_are_kept_ahead_of_the_first_message_id(server: SmtpServer) -> None:
    thread = {"message_id": "<first@alerts.example.org>", "references": "<older@x.example>"}

    result = channel(server).send(notification(event="updated", thread=thread))

    assert result.ok, result.error
    reply = server.messages[0].message
    assert reply["In-Reply-To"] == "<first@alerts.example.org>"
    assert reply["References"] == "<older@x.example> <first@alerts.example.org>"


@pytest.mark.parametrize(
    ("event", "prefix"),
    [("severity_raised", "Severity raised: "), ("reopened", "Reopened: "), ("updated", "Update: ")],
)
def test_subject_prefix_names_the_event(event: str, prefix: str) -> None:
    rendered = channel().templates.render(notification(event=event))
    assert rendered.subject == f"{prefix}[P0] #12 PostgresDown on database-postgres"


def test_html_escapes_the_title_and_text_keeps_it(server: SmtpServer) -> None:
    title = "<script>alert(1)</script> & friends"

    assert channel(server).send(notification(title=title)).ok

    bodies = parts(server.messages[0].message)
    assert "<script>" not in bodies["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in bodies["html"]
    assert title in bodies["plain"]


def test_starttls_with_a_self_signed_certificate(cert: CertPair) -> None:
    with SmtpServer(tls="starttls", cert=cert) as server:
        result = channel(server, tls="starttls", validate_certs=False).send(notification())

        assert result.ok, result.error
        assert server.messages[0].tls


def test_starttls_verifies_the_certificate_by_default(cert: CertPair) -> None:
    with SmtpServer(tls="starttls", cert=cert) as server:
        result = channel(server, tls="starttls").send(notification())

        assert not result.ok and not result.retryable
        assert "certificate verification failed" in (result.error or "")
        assert server.messages == []


def test_implicit_tls(cert: CertPair) -> None:
    with SmtpServer(tls="tls", cert=cert) as server:
        result = channel(server, tls="tls", validate_certs=False).send(notification())

        assert result.ok, result.error
        assert server.messages[0].tls


def test_starttls_required_but_not_offered_is_not_retryable(server: SmtpServer) -> None:
    result = channel(server, tls="starttls").send(notification())

    assert not result.ok and not result.retryable and not result.target_unreachable
    assert "does not offer STARTTLS" in (result.error or "")
    assert server.messages == []


def test_auth_over_starttls(cert: CertPair) -> None:
    with SmtpServer(tls="starttls", cert=cert, username="relay", password="s3cret") as server:
        email = channel(
            server, tls="starttls", validate_certs=False, username="relay", password="s3cret"
        )

        result = email.send(notification())

        assert result.ok, result.error
        assert server.messages[0].login == "relay" and server.messages[0].tls


def test_wrong_password_is_535_and_not_retryable(cert: CertPair) -> None:
    with SmtpServer(tls="starttls", cert=cert, username="relay", password="s3cret") as server:
        email = channel(
            server, tls="starttls", validate_certs=False, username="relay", password="wrong"
        )

        result = email.send(notification())

        assert not result.ok and not result.retryable and not result.target_unreachable
        assert (result.error or "").startswith("SMTP authentication failed: 535")
        assert server.auth_attempts >= 1 and server.messages == []


def test_username_against_a_server_without_auth_is_a_clear_error(server: SmtpServer) -> None:
    result = channel(server, username="relay", password="s3cret").send(notification())

    assert not result.ok and not result.retryable
    assert "does not offer AUTH" in (result.error or "")


def test_451_to_rcpt_is_retryable_and_the_next_attempt_goes_through(server: SmtpServer) -> None:
    email = channel(server)
    server.fail_next_rcpt(451, "4.3.0 Mail server temporarily rejected message")

    failed = email.send(notification())

    assert not failed.ok and failed.retryable and not failed.target_unreachable
    assert "451" in (failed.error or "") and "temporarily rejected" in (failed.error or "")
    assert server.messages == []
    assert email.send(notification()).ok
    assert len(server.messages) == 1


@pytest.mark.parametrize(
    ("code", "text", "unreachable", "retryable"),
    [
        (550, "5.1.1 No such user here", True, False),
        (553, "mailbox name not allowed", True, False),  # no enhanced code: by reply code
        (550, "5.7.1 Relaying denied", False, False),  # policy: the sender's problem
        (552, "5.2.2 Mailbox full", False, True),  # RFC 5321: temporary at RCPT
    ],
)
def test_rcpt_refusals(
    server: SmtpServer, code: int, text: str, unreachable: bool, retryable: bool
) -> None:
    server.reject(TARGET, code, text)

    result = channel(server).send(notification())

    assert not result.ok and server.messages == []
    assert (result.target_unreachable, result.retryable) == (unreachable, retryable)
    assert result.error == f"recipient {TARGET} refused: {code} {text}"


@pytest.mark.parametrize("target", ["not-an-address", "a@example.com, b@example.com", "@x.org"])
def test_an_invalid_address_never_reaches_the_server(server: SmtpServer, target: str) -> None:
    result = channel(server).send(notification(target=target))

    assert not result.ok and result.target_unreachable and not result.retryable
    assert server.messages == []


def test_a_display_name_target_is_sent_to_its_address(server: SmtpServer) -> None:
    assert channel(server).send(notification(target=f"On Call <{TARGET}>")).ok
    assert server.messages[0].recipients == [TARGET]


def test_4xx_at_end_of_data_is_retryable_and_5xx_is_not(server: SmtpServer) -> None:
    email = channel(server)
    server.fail_next_data(451, "4.7.1 Greylisted, come back later")
    greylisted = email.send(notification())
    server.fail_next_data(554, "5.6.0 Message content rejected")
    rejected = email.send(notification())

    assert greylisted.retryable and not greylisted.target_unreachable
    assert greylisted.error == "message refused: 451 4.7.1 Greylisted, come back later"
    assert not rejected.ok and not rejected.retryable and not rejected.target_unreachable
    assert rejected.error == "message refused: 554 5.6.0 Message content rejected"
    assert server.messages == []


def test_421_greeting_is_retryable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((HOST, 0))
        busy.listen(1)

        def greet_and_hang_up() -> None:
            connection, _ = busy.accept()
            with connection:
                connection.sendall(b"421 4.3.2 Too busy, try later\r\n")

        greeter = threading.Thread(target=greet_and_hang_up, daemon=True)
        greeter.start()
        result = channel(port=busy.getsockname()[1]).send(notification())
        greeter.join(timeout=5)

    assert not result.ok and result.retryable
    assert "421 4.3.2 Too busy, try later" in (result.error or "")


def test_send_works_when_called_from_inside_an_event_loop(server: SmtpServer) -> None:
    email = channel(server)

    async def caller() -> SendResult:
        return email.send(notification())

    assert asyncio.run(caller()).ok
    assert len(server.messages) == 1


def test_a_stopped_server_is_retryable() -> None:
    server = SmtpServer().start()
    server.stop()

    result = channel(server).send(notification())

    assert not result.ok and result.retryable and not result.target_unreachable
    assert "connection" in (result.error or "").lower()


def test_a_server_that_never_greets_times_out_as_retryable() -> None:
    # A listening socket nobody accepts from: the TCP handshake completes, no greeting.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind((HOST, 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()

        result = channel(port=port, timeout_seconds=0.5).send(notification())

        assert not result.ok and result.retryable
        assert "timed out" in (result.error or "").lower()
        assert time.monotonic() - started < 3


def test_no_host_configured_is_not_retryable() -> None:
    result = channel(host="").send(notification())
    assert result == SendResult(ok=False, error="email channel: no SMTP host configured")


def test_a_template_with_a_syntax_error_fails_at_build() -> None:
    with pytest.raises(ValueError, match="subject template is invalid"):
        channel(subject_template="{{ title ")


def test_a_template_naming_an_unknown_variable_fails_at_build() -> None:
    with pytest.raises(ValueError, match=r"reads unknown variable\(s\) titel"):
        channel(text_template="{{ titel }}")
    # Also in a branch the sample notification does not take.
    with pytest.raises(ValueError, match=r"unknown variable\(s\) oops"):
        channel(subject_template="{% if event == 'resolved' %}{{ oops }}{% endif %}")


def test_template_overrides_are_used_and_sandboxed(server: SmtpServer) -> None:
    email = channel(
        server,
        subject_template="{{ severity }} {{ title }}\nBcc: everyone@example.com",
        html_template="<p>{{ title }}</p>",
    )

    assert email.send(notification(title="<b>x</b>")).ok

    message = server.messages[0].message
    # The newline is folded away: a template cannot inject a header.
    assert message["Subject"] == "P0 <b>x</b> Bcc: everyone@example.com"
    assert message["Bcc"] is None
    assert parts(message)["html"] == "<p>&lt;b&gt;x&lt;/b&gt;</p>\n"
    with pytest.raises(ValueError, match="does not render"):
        channel(subject_template="{{ title.__class__.__mro__ }}")


def test_an_override_failing_on_one_notification_gives_way_to_the_built_in_part(
    server: SmtpServer,
) -> None:
    # Fine on the sample (it has a root cause), fails on an incident without one.
    email = channel(server, subject_template="{{ root_cause.upper() }} down")
    assert email.send(notification(root_cause=None)).ok
    assert email.send(notification(incident_id=13)).ok
    fallback, own = (m.message["Subject"] for m in server.messages)
    assert fallback == "[P0] #12 PostgresDown on database-postgres"
    assert own == "DATABASE-POSTGRES down"


def test_settings_object_is_accepted_as_is(server: SmtpServer) -> None:
    settings = EmailSettings(host=HOST, port=server.port, tls="none", password="hunter2")
    assert "hunter2" not in repr(settings)
    email = build("email", settings)
    assert email.name == "email"
    assert email.send(notification()).ok
    assert server.messages[0].message["From"] == "incidents@localhost"


@pytest.mark.parametrize("use_openssl", [False, True], ids=["default", "openssl"])
def test_both_certificate_generators_serve_starttls(tmp_path: Path, use_openssl: bool) -> None:
    if use_openssl and shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    pair = self_signed_cert(tmp_path, use_openssl=use_openssl)
    assert pair.cert.read_text().startswith("-----BEGIN CERTIFICATE-----")

    with SmtpServer(tls="starttls", cert=pair) as server:
        result = channel(server, tls="starttls", validate_certs=False).send(notification())

        assert result.ok, result.error
        assert server.messages[0].tls
