"""The webhook channel against a local HTTP receiver, and the console channel."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from incidents.notify.base import Notification, build
from incidents.notify.channels import console, webhook
from incidents.notify.channels.webhook import retry_after_seconds, verify

SECRET = "s3cret-for-tests"


def note(**changes: Any) -> Notification:
    """The PostgresDown page the tests send, with changes."""
    base = Notification(
        delivery_id=77,
        incident_id=12,
        event="opened",
        severity="P0",
        status="open",
        title="PostgresDown",
        services=("database-postgres", "orders"),
        root_cause="database-postgres",
        root_reason="3 dependants firing",
        blast_radius=("orders", "web"),
        url="https://incidents.example.org/incidents/12",
        target="",
        details=("orders: HighErrorRate joined",),
    )
    return dataclasses.replace(base, **changes)


class Receiver:
    """A local webhook receiver: records requests, answers as told, de-duplicates."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        # Delivery ids already processed: what a receiver keeps to drop repeats.
        self.processed: set[str] = set()
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.delay = 0.0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/incidents"

    def answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next request with this status (default: 200)."""
        self.answers.append((status, headers or {}))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.received.append((dict(self.headers.items()), body))
                    status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                    if status == 200:
                        receiver.processed.add(self.headers["X-Incidents-Delivery"])
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_signed_post_carries_the_notification(receiver: Receiver) -> None:
    channel = build("webhook", {"secret": SECRET})
    before = int(time.time())
    result = channel.send(note(target=receiver.url))
    assert result.ok and not result.retryable
    [(headers, body)] = receiver.received
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Incidents-Event"] == "opened"
    assert headers["X-Incidents-Delivery"] == "77"
    timestamp = headers["X-Incidents-Timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    # Checked the way a receiver would, without the channel's helpers.
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert headers["X-Incidents-Signature"] == "sha256=" + expected.hexdigest()
    assert verify(SECRET, timestamp, body, headers["X-Incidents-Signature"])
    assert not verify(
        SECRET, timestamp, body.replace(b"P0", b"P3"), headers["X-Incidents-Signature"]
    )
    assert not verify("other", timestamp, body, headers["X-Incidents-Signature"])
    assert json.loads(body) == {
        "delivery_id": 77,
        "incident_id": 12,
        "event": "opened",
        "severity": "P0",
        "status": "open",
        "title": "PostgresDown",
        "services": ["database-postgres", "orders"],
        "root_cause": "database-postgres",
        "root_reason": "3 dependants firing",
        "blast_radius": ["orders", "web"],
        "url": "https://incidents.example.org/incidents/12",
        "details": ["orders: HighErrorRate joined"],
    }


def test_repeated_delivery_can_be_deduplicated(receiver: Receiver) -> None:
    channel = build("webhook", webhook.WebhookSettings(secret=SECRET))
    first = note(target=receiver.url)
    # The worker may send the same delivery again (a crash after the POST); a new event
    # is a new delivery.
    assert channel.send(first).ok
    assert channel.send(first).ok
    assert channel.send(dataclasses.replace(first, delivery_id=78, event="resolved")).ok
    ids = [h["X-Incidents-Delivery"] for h, _ in receiver.received]
    assert ids == ["77", "77", "78"]
    assert receiver.processed == {"77", "78"}


def test_without_secret_requests_are_unsigned(receiver: Receiver) -> None:
    assert build("webhook", None).send(note(target=receiver.url)).ok
    headers, _ = receiver.received[0]
    assert "X-Incidents-Signature" not in headers
    assert headers["X-Incidents-Delivery"] == "77"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(receiver: Receiver, status: int) -> None:
    receiver.answer(status)
    assert build("webhook", None).send(note(target=receiver.url)).ok


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retryable(receiver: Receiver, status: int) -> None:
    receiver.answer(status)
    result = build("webhook", None).send(note(target=receiver.url))
    assert not result.ok and result.retryable and result.retry_after is None
    assert str(status) in (result.error or "")
    assert len(receiver.received) == 1


def test_429_honours_retry_after(receiver: Receiver) -> None:
    channel = build("webhook", None)
    receiver.answer(429, {"Retry-After": "30"})
    limited = channel.send(note(target=receiver.url))
    assert not limited.ok and limited.retryable and limited.retry_after == 30.0
    receiver.answer(503, {"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"})
    later = channel.send(note(target=receiver.url))
    assert later.retryable and later.retry_after is not None and later.retry_after > 86400


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
def test_other_answers_are_not_retried(receiver: Receiver, status: int) -> None:
    # A redirect is not followed: a signed body should not wander to another host.
    receiver.answer(status, {"Location": "http://127.0.0.1:9/elsewhere"} if status == 301 else {})
    result = build("webhook", None).send(note(target=receiver.url))
    assert not result.ok and not result.retryable and not result.target_unreachable
    assert f"webhook answered {status}" in (result.error or "")
    assert len(receiver.received) == 1


def test_connection_refused_and_timeout_are_retryable(receiver: Receiver) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = build("webhook", None).send(note(target=f"http://127.0.0.1:{port}/hook"))
    assert not refused.ok and refused.retryable and "unreachable" in (refused.error or "")
    receiver.delay = 1.0
    slow = build("webhook", {"timeout_seconds": 0.2}).send(note(target=receiver.url))
    assert not slow.ok and slow.retryable and "timed out" in (slow.error or "")


def test_non_http_target_is_unreachable() -> None:
    result = build("webhook", None).send(note(target="ftp://example.org/x"))
    assert not result.ok and not result.retryable and result.target_unreachable


def test_retry_after_parsing() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Tue, 01 Jan 2030 00:01:00 GMT", now=now) == 60.0


def test_settings_are_strict() -> None:
    with pytest.raises(ValueError):
        build("webhook", {"secrett": "typo"})


# --- Console -------------------------------------------------------------------------


def test_console_block(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    channel = build("console", {"stream": stream})
    assert channel.send(note(target="ops")).ok
    assert channel.send(note(event="resolved", status="resolved", details=(), root_reason=None)).ok
    assert stream.getvalue() == (
        "=== PAGE P0 #12 opened: PostgresDown on database-postgres ===\n"
        "root cause: database-postgres (3 dependants firing)\n"
        "services: database-postgres, orders\n"
        "blast radius: orders, web\n"
        "  - orders: HighErrorRate joined\n"
        "link: https://incidents.example.org/incidents/12\n"
        "=== RESOLVED P0 #12 resolved: PostgresDown on database-postgres ===\n"
        "root cause: database-postgres\n"
        "services: database-postgres, orders\n"
        "blast radius: orders, web\n"
        "link: https://incidents.example.org/incidents/12\n"
    )
    assert capsys.readouterr().out == ""


def test_console_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    result = build("console", None).send(note(root_cause=None, services=(), blast_radius=()))
    assert result.ok
    out = capsys.readouterr().out
    assert out.startswith("=== PAGE P0 #12 opened: PostgresDown ===\n")
    assert "root cause" not in out and "link: https://incidents.example.org/incidents/12" in out


def test_console_template_override_and_broken_template() -> None:
    stream = io.StringIO()
    channel = console.ConsoleNotifier(
        console.ConsoleSettings(stream=stream, template="{{ kind }} {{ incident_id }}")
    )
    assert channel.send(note()).ok
    assert stream.getvalue() == "PAGE 12\n"
    with pytest.raises(ValueError, match="console template does not compile"):
        build("console", {"template": "{% for %}"})
