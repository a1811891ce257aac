"""Fixtures of the end-to-end tests: each module gets its own service and Alertmanager."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import alertmanager_binary, require
from tests.e2e.processes import (
    HOOK_PATH,
    START_TIMEOUT,
    TOKEN,
    WRONG_TOKEN,
    Alertmanager,
    Captured,
    CaptureServer,
    Service,
    free_port,
    incidents_argv,
    spawn,
    wait_for,
)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaptureServer]:
    log = tmp_path_factory.mktemp("capture") / "notifications.jsonl"
    server_ref: list[CaptureServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            server_ref[0].record(Captured(self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_ref.append(CaptureServer(f"http://127.0.0.1:{httpd.server_address[1]}/capture", log))
    thread = threading.Thread(target=httpd.serve_forever, name="am-capture", daemon=True)
    thread.start()
    try:
        yield server_ref[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("incidents")) as svc:
        yield svc


@contextmanager
def running_service(tmp: Path, **extra_env: str) -> Iterator[Service]:
    """`incidents serve` on a throwaway SQLite database, with more INCIDENTS_* if given."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update(
        INCIDENTS_DATABASE_URL=f"sqlite:///{tmp / 'incidents.db'}",
        INCIDENTS_API_TOKEN=TOKEN,
        INCIDENTS_HOST="127.0.0.1",
        INCIDENTS_PORT=str(port),
        INCIDENTS_CONFIG="",
        INCIDENTS_BROKER_URL="",
        INCIDENTS_LOG_JSON="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env)
    base_url = f"http://127.0.0.1:{port}"
    proc = spawn("incidents serve", incidents_argv(), tmp / "incidents.log", env)
    client = httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
        trust_env=False,
    )
    try:
        wait_for(
            "GET /readyz of our service",
            lambda: True if client.get("/readyz").status_code == 200 else None,
            START_TIMEOUT,
            proc.logs,
            (proc,),
        )
        yield Service(proc, base_url, client)
    finally:
        client.close()
        proc.stop()


# --- Alertmanager ---


AM_CONFIG = """\
route:
  receiver: incidents
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - receiver: wrong-token
      matchers: ['route="wrong-token"']
receivers:
  - name: incidents
    webhook_configs:
      - url: {hook}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
      - url: {capture}
        send_resolved: true
  - name: wrong-token
    webhook_configs:
      - url: {hook}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {wrong}
      - url: {capture}
        send_resolved: true
"""


@pytest.fixture(scope="module")
def am_binary() -> str:
    binary = alertmanager_binary()
    if binary is None:
        require(
            "Alertmanager",
            "no prometheus-alertmanager or alertmanager on PATH; "
            "install prometheus-alertmanager (apt-get install prometheus-alertmanager)",
        )
        raise AssertionError("unreachable: require() skips or fails")
    return binary


@pytest.fixture(scope="module")
def alertmanager(
    am_binary: str,
    service: Service,
    capture: CaptureServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Alertmanager]:
    tmp = tmp_path_factory.mktemp("alertmanager")
    config = tmp / "am.yml"
    config.write_text(
        AM_CONFIG.format(
            hook=f"{service.base_url}{HOOK_PATH}",
            token=TOKEN,
            wrong=WRONG_TOKEN,
            capture=capture.url,
        )
    )
    port = free_port()
    storage = tmp / "data"
    storage.mkdir()
    proc = spawn(
        "alertmanager",
        [
            am_binary,
            f"--config.file={config}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ],
        tmp / "alertmanager.log",
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False)
    try:
        wait_for(
            "Alertmanager's /-/ready",
            lambda: True if client.get("/-/ready").status_code == 200 else None,
            START_TIMEOUT,
            proc.logs,
            (proc,),
        )
        yield Alertmanager(proc, client, capture, service)
    finally:
        client.close()
        proc.stop()
