"""A local HTTP server that answers like Twilio's Messages and Calls APIs.

Start it, point `TwilioSettings.api_url` at `fake.url`, and the real `twilio.rest.Client`
talks to it over HTTP. Usage:

    with FakeTwilio() as fake:
        settings = fake.settings(public_url="https://incidents.example")
        ...                                  # send through the channels
        fake.messages()                      # form bodies of accepted messages
        fake.fail_next(2, status=429, code=20429, retry_after="7")
        fake.fail_next(1, status=400, code=21610, problem=True)  # RFC 9457 body
        fake.fail_number("+15005550009", 21610)
        fake.delay = 2.0                     # answer slowly (timeouts)
        fake.answer_delay = 2.0              # accept at once, answer late (a send in doubt)
        fake.callback(sid, "undelivered", error_code=30003)  # a status callback, now

Accepted messages and calls can be listed back (`GET .../Messages.json?To=...&From=...`,
newest first), as a sender does to check whether an attempt it lost track of went out.

It checks HTTP basic auth (account SID and auth token: 401 with code 20003 otherwise),
the required parameters, and answers 201 with a `sid` (`SM...`, `CA...`) and status
`queued`. Errors use Twilio's JSON shape: `code`, `message`, `more_info`, `status`.

What happens next is up to the test: `callback()` POSTs Twilio's signed status form to
the message's or call's `StatusCallback` (tests/notify/twilio_webhooks.py); never alone.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx

from incidents.notify.channels.twilio_client import TwilioSettings
from tests.notify.twilio_webhooks import post_signed, status_form

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-auth-token"
FROM_NUMBER = "+15005550006"

# What Twilio answers for the codes the tests use: HTTP status and message.
KNOWN_ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "An internal server error has occurred"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    30003: (400, "Unreachable destination handset"),
    30006: (400, "Landline or unreachable carrier"),
}
_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/(?P<kind>Messages|Calls)\.json$")


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]
    status: int
    # Every value of each field (the form keeps the last), e.g. StatusCallbackEvent.
    values: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Created:
    """A message or call the fake accepted: what a status callback needs."""

    kind: str
    form: dict[str, str]
    callbacks: int = 0


@dataclass
class _Fault:
    status: int
    code: int
    retry_after: str | None
    problem: bool


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[Recorded] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    numbers: dict[str, int | None] = field(default_factory=dict)
    listed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    created: dict[str, Created] = field(default_factory=dict)


class FakeTwilio:
    """The fake server; a context manager that starts and stops it."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        # Seconds to wait before answering each request.
        self.delay = 0.0
        # Seconds to wait after accepting a request before answering it.
        self.answer_delay = 0.0
        self._state = _State()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # A short poll keeps shutdown (each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL to use as `api_url`."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeTwilio:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def settings(self, **overrides: Any) -> TwilioSettings:
        """Twilio settings pointing at this server with its credentials."""
        values: dict[str, Any] = {
            "account_sid": self.account_sid,
            "auth_token": self.auth_token,
            "from_number": FROM_NUMBER,
            "api_url": self.url,
            "timeout_seconds": 5,
        }
        values.update(overrides)
        return TwilioSettings(**values)

    def fail_next(
        self,
        count: int,
        status: int = 429,
        code: int = 20429,
        retry_after: str | None = None,
        problem: bool = False,
    ) -> None:
        """Answer the next `count` requests with this error (Retry-After if given).

        `problem` answers in the RFC 9457 shape newer Twilio APIs use instead.
        """
        with self._state.lock:
            fault = _Fault(status, code, retry_after, problem)
            self._state.faults.extend(fault for _ in range(count))

    def fail_number(self, number: str, code: int | None) -> None:
        """Answer every request to this number with a Twilio error code (None: accept)."""
        with self._state.lock:
            self._state.numbers[number] = code

    @property
    def requests(self) -> list[Recorded]:
        """Every request received, in order."""
        with self._state.lock:
            return list(self._state.requests)

    def messages(self) -> list[dict[str, str]]:
        """Form bodies of messages the fake accepted."""
        return [
            r.form for r in self.requests if r.path.endswith("/Messages.json") and r.status == 201
        ]

    def calls(self) -> list[dict[str, str]]:
        """Form bodies of calls the fake accepted."""
        return self._accepted("/Calls.json")

    def callback(
        self,
        sid: str,
        status: str,
        *,
        error_code: int | None = None,
        sip_response_code: int | None = None,
        omit: Iterable[str] = (),
        url: str | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """POST Twilio's status callback for an accepted message or call, now.

        `omit` drops fields before signing, `url` signs and posts to another URL than
        the StatusCallback, and `signature` replaces the computed one ("" sends none).
        """
        with self._state.lock:
            created = self._state.created[sid]
            created.callbacks += 1
            sequence = created.callbacks - 1
        target = url or created.form.get("StatusCallback")
        if not target:
            raise AssertionError(f"{sid} was created without a StatusCallback")
        form = status_form(
            self.account_sid, sid, created.kind, created.form, status, sequence=sequence
        )
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        if sip_response_code is not None:
            form["SipResponseCode"] = str(sip_response_code)
        for name in omit:
            form.pop(name, None)
        return self.post_signed(target, form, signature=signature)

    def post_signed(
        self, url: str, form: dict[str, str], *, signature: str | None = None
    ) -> httpx.Response:
        """POST a form as Twilio's webhooks do, signed with the auth token."""
        return post_signed(self.auth_token, url, form, signature=signature)

    def _accepted(self, suffix: str) -> list[dict[str, str]]:
        return [r.form for r in self.requests if r.path.endswith(suffix) and r.status == 201]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                match = _PATH.match(path)
                if not match or not fake._authorized(
                    self.headers.get("Authorization", ""), match["sid"]
                ):
                    self._reply(401, _error(20003, "Authenticate", 401), {})
                    return
                wanted = {k: v[-1] for k, v in parse_qs(query).items()}
                with fake._state.lock:
                    fake._state.requests.append(
                        Recorded("GET", path, wanted, dict(self.headers.items()), 200)
                    )
                self._reply(200, fake._listing(match["kind"], path, wanted), {})

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                values = parse_qs(raw, keep_blank_values=True)
                form = {k: v[-1] for k, v in values.items()}
                if fake.delay:
                    time.sleep(fake.delay)
                status, body, headers = fake._answer(self.path, self.headers, form)
                with fake._state.lock:
                    fake._state.requests.append(
                        Recorded(
                            "POST", self.path, form, dict(self.headers.items()), status, values
                        )
                    )
                if fake.answer_delay:
                    time.sleep(fake.answer_delay)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._reply(status, body, headers)

        return Handler

    def _answer(
        self, path: str, headers: Any, form: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        match = _PATH.match(path)
        if not match:
            return 404, _error(20404, "The requested resource was not found", 404), {}
        if not self._authorized(headers.get("Authorization", ""), match["sid"]):
            return 401, _error(20003, "Authenticate", 401), {}
        with self._state.lock:
            fault = self._state.faults.pop(0) if self._state.faults else None
            number_code = self._state.numbers.get(form.get("To", ""))
        if fault is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            message = KNOWN_ERRORS.get(fault.code, (fault.status, "Error"))[1]
            if fault.problem:
                return fault.status, _problem(fault.code, message, fault.status), extra
            return fault.status, _error(fault.code, message, fault.status), extra
        if number_code is not None:
            status, message = KNOWN_ERRORS.get(number_code, (400, "Error"))
            return status, _error(number_code, message, status), {}
        kind = match["kind"]
        missing = [name for name in ("To", "From") if not form.get(name)]
        if kind == "Messages" and not form.get("Body"):
            missing.append("Body")
        if kind == "Calls" and not (form.get("Url") or form.get("Twiml")):
            missing.append("Url or Twiml")
        if missing:
            return 400, _error(21604, f"Missing required parameter: {missing[0]}", 400), {}
        return 201, self._created(kind, match["sid"], form), {}

    def _listing(self, kind: str, path: str, wanted: dict[str, str]) -> dict[str, Any]:
        """A page of accepted messages or calls, newest first, filtered by To and From."""
        with self._state.lock:
            found = [
                resource
                for made, resource in reversed(self._state.listed)
                if made == kind
                and all(resource[k.lower()] == v for k, v in wanted.items() if k in ("To", "From"))
            ]
        size = int(wanted.get("PageSize", 50))
        return {
            kind.lower(): found[:size],
            "uri": path,
            "first_page_uri": path,
            "next_page_uri": None,
            "previous_page_uri": None,
            "page": 0,
            "page_size": size,
            "start": 0,
            "end": max(0, min(size, len(found)) - 1),
        }

    def _authorized(self, header: str, sid: str) -> bool:
        if not header.startswith("Basic ") or sid != self.account_sid:
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token

    def _created(self, kind: str, sid: str, form: dict[str, str]) -> dict[str, Any]:
        number = next(self._ids)
        prefix = "SM" if kind == "Messages" else "CA"
        resource_sid = f"{prefix}{number:032x}"
        with self._state.lock:
            self._state.created[resource_sid] = Created(kind, dict(form))
        now = formatdate(usegmt=True)
        common = {
            "sid": resource_sid,
            "account_sid": sid,
            "api_version": "2010-04-01",
            "to": form["To"],
            "from": form["From"],
            "status": "queued",
            "date_created": now,
            "date_updated": now,
            "uri": f"/2010-04-01/Accounts/{sid}/{kind}/{resource_sid}.json",
        }
        if kind == "Messages":
            resource = {
                **common,
                "body": form["Body"],
                "direction": "outbound-api",
                "num_segments": "1",
                "num_media": "0",
                "error_code": None,
                "error_message": None,
                "price": None,
                "price_unit": "USD",
            }
        else:
            resource = {**common, "direction": "outbound-api", "price": None, "price_unit": "USD"}
        with self._state.lock:
            self._state.listed.append((kind, resource))
        return resource


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _problem(code: int, title: str, status: int) -> dict[str, Any]:
    return {
        "type": f"https://www.twilio.com/docs/errors/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": f"{title} (problem details)",
    }
