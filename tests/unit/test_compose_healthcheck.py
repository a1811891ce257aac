"""examples/compose/healthcheck.py, the health check of the stack's own containers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "examples" / "compose" / "healthcheck.py"


def check(*args: str, **env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=environ, capture_output=True, timeout=30
    )
    return done.returncode


@pytest.fixture
def web() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_mode(web: str) -> None:
    assert check("http", f"{web}/readyz") == 0
    assert check("http", f"{web}/down") == 1
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert check("http", f"http://127.0.0.1:{port}/readyz") == 1
    assert check("nonsense") == 2


def test_celery_mode_needs_the_child_and_the_broker() -> None:
    with socket.socket() as broker:
        broker.bind(("127.0.0.1", 0))
        broker.listen()
        url = f"redis://127.0.0.1:{broker.getsockname()[1]}/0"
        # A stand-in for the supervised child: its command line names workers.main.
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(30)", "workers.main"]
        )
        try:
            assert check("celery", INCIDENTS_BROKER_URL=url) == 0
            assert check("celery", INCIDENTS_BROKER_URL="") == 1
        finally:
            child.terminate()
            child.wait(timeout=10)
    # The broker's port is closed now; and no child runs.
    assert check("celery", INCIDENTS_BROKER_URL=url) == 1
