"""The docs page in a real headless Chromium, with every address but loopback unreachable."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from incidents.api.app import create_app
from tests.conftest import make_settings, require


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_url(sqlite_url: str) -> Iterator[str]:
    """The app served by uvicorn on a loopback port, for the browser."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(make_settings(sqlite_url)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        require("Chromium", "install Debian's chromium package (apt-get install chromium)")
    assert found is not None
    return found


def _page_requests(netlog: Path, origin: str) -> list[str]:
    """URLs the page itself asked for: the browser's own background requests are left out."""
    log: dict[str, Any] = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] != start_job or "url" not in params:
            continue
        if params.get("initiator") == origin or params.get("request_type") == "main frame":
            urls.append(params["url"])
    return urls


def test_docs_page_renders_every_operation_offline(
    live_url: str, chromium: str, tmp_path: Path, client_for: Callable[..., Any], sqlite_url: str
) -> None:
    netlog = tmp_path / "net.json"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        # Loopback bypasses the proxy; everything else goes to a closed port: no internet.
        "--proxy-server=http://127.0.0.1:9",
        f"--log-net-log={netlog}",
        # Lets Swagger UI fetch the document and render before the DOM is dumped.
        "--virtual-time-budget=10000",
        "--dump-dom",
        f"{live_url}/",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]

    # The page rendered the document: each operation, and the Authorize button.
    document = client_for(sqlite_url).get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method in operations:
            assert f'data-path="{path}"' in dom, path
            assert f"opblock-{method}" in dom, (path, method)
    assert "btn authorize" in dom
    # A lock on each operation that needs the token, and only there.
    secured = sum(1 for p, ops in document["paths"].items() if p.startswith("/api/") for _ in ops)
    assert dom.count('aria-label="authorization button unlocked"') == secured
    assert "Failed to load API definition" not in dom

    # It needed nothing but this server.
    requested = _page_requests(netlog, live_url)
    assert f"{live_url}/openapi.json" in requested
    assert f"{live_url}/docs/assets/swagger-ui-bundle.js" in requested
    elsewhere = [url for url in requested if not url.startswith(f"{live_url}/")]
    assert not elsewhere, elsewhere
