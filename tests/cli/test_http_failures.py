"""How the client commands report what is not a clean answer: a proxy's error page, a
list of problems, a server too slow for --timeout, a missing key."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from incidents.cli import main

# path -> (status, content type, body, seconds to wait before answering)
ANSWERS: dict[str, tuple[int, str, str, float]] = {
    "/api/v1/incidents": (
        502,
        "text/html",
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        0,
    ),
    "/api/v1/silences": (503, "text/plain", "upstream connect error\nmore detail", 0),
    "/api/v1/schedules": (
        422,
        "application/json",
        json.dumps(
            {
                "error": "validation_error",
                "message": "at: invalid datetime",
                "errors": [
                    {"field": "at", "message": "invalid datetime"},
                    {"field": "limit", "message": "must be at most 1000"},
                ],
            }
        ),
        0,
    ),
    "/api/v1/alerts": (200, "application/json", '{"items": [], "next_cursor": null}', 2.0),
}


@pytest.fixture
def url() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if self.headers.get("Authorization") is None:
                status, media, body, wait = 401, "application/json", "", 0.0
                body = json.dumps({"error": "unauthorized", "message": "missing credentials"})
            else:
                status, media, body, wait = ANSWERS[path]
            time.sleep(wait)
            data = body.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up waiting

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def run(url: str, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    def go(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--url", url])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def test_a_proxys_error_page_is_its_status_not_its_html(
    run: Callable[..., tuple[int, str, str]],
) -> None:
    assert run("incident", "list", "--key", "k") == (
        1,
        "",
        "incidents: Bad Gateway (HTTP 502)\n",
    )
    # Plain text is shown: its first line.
    assert run("silence", "query", "--key", "k")[2] == (
        "incidents: upstream connect error (HTTP 503)\n"
    )


def test_every_problem_the_server_lists_is_shown(
    run: Callable[..., tuple[int, str, str]],
) -> None:
    code, _, err = run("oncall", "--key", "k")
    assert code == 1
    assert err.splitlines() == [
        "incidents: at: invalid datetime (HTTP 422)",
        "  at: invalid datetime",
        "  limit: must be at most 1000",
    ]


def test_a_slow_server_and_the_timeout(run: Callable[..., tuple[int, str, str]], url: str) -> None:
    started = time.monotonic()
    code, _, err = run("alert", "query", "--key", "k", "--timeout", "0.5")
    assert time.monotonic() - started < 1.9
    assert (code, err) == (1, f"incidents: {url} did not answer within 0.5 s (--timeout)\n")
    assert run("alert", "query", "--key", "k", "--timeout", "0")[::2] == (
        2,
        "incidents: --timeout: must be a positive number of seconds\n",
    )


def test_a_401_without_a_key_says_how_to_give_one(
    run: Callable[..., tuple[int, str, str]],
) -> None:
    code, _, err = run("incident", "list")
    assert code == 1
    assert err.splitlines() == [
        "incidents: missing credentials (HTTP 401)",
        "  no key was sent: give it with --key, INCIDENTS_KEY or the client config file",
    ]
