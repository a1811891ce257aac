"""A local HTTP server that records every request and answers as a test tells it to.

    with RecordingServer() as server:
        server.respond("POST", "/hook", Reply(503), Reply(200, json={"id": 7}))
        ...  # the first POST /hook gets 503, every later one 200 {"id": 7}
        [r.json() for r in server.requests_to("POST", "/hook")]

Anything not programmed answers 200 {"ok": true}. A reply can be delayed, to test
timeouts; the server's threads are daemons, so a stalled reply never blocks the test's end.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

_UNSET: Any = object()


@dataclass(frozen=True)
class Reply:
    """One programmed answer: a JSON body (`json`) or a text one (`text`)."""

    status: int = 200
    json: Any = _UNSET
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering.
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        """The body's bytes and content type."""
        if self.text is not None:
            return self.text.encode(), "text/plain; charset=utf-8"
        value = {"ok": True} if self.json is _UNSET else self.json
        return json.dumps(value).encode(), "application/json"


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it; header names are lower case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    # time.monotonic() when the request (head and body) had arrived.
    at: float

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return json.loads(self.body)


class RecordingServer:
    """A threaded HTTP server on 127.0.0.1 and a free port; a context manager."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: a certificate and key file (see `self_signed_cert`), to serve https."""
        self._scheme = "https" if tls else "http"
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._replies: dict[tuple[str, str], list[Reply]] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        # A short poll interval: shutdown() waits for the loop's next poll.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:40123 (no trailing slash)."""
        return f"{self._scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def respond(self, method: str, path: str, *replies: Reply) -> None:
        """Answer `method path` with these replies in turn; the last one then repeats."""
        if not replies:
            raise ValueError("respond needs at least one Reply")
        with self._lock:
            self._replies[(method.upper(), path)] = list(replies)

    @property
    def requests(self) -> list[Recorded]:
        """Every request so far, in order of arrival."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        """The requests for one method and path."""
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def _record_and_choose(self, request: Recorded) -> Reply:
        with self._lock:
            self._requests.append(request)
            queue = self._replies.get((request.method, request.path))
            if not queue:
                return Reply()
            return queue.pop(0) if len(queue) > 1 else queue[0]


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command in `folder`.

    The test is skipped (saying why) where the command is not installed.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _handler_for(server: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = Recorded(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.monotonic(),
            )
            reply = server._record_and_choose(request)
            if reply.delay:
                time.sleep(reply.delay)
            data, content_type = reply.encoded()
            try:
                self.send_response(reply.status)
                if "content-type" not in {name.lower() for name in reply.headers}:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    return Handler
