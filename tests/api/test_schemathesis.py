"""Schemathesis against the served OpenAPI document, on PostgreSQL: no 5xx, responses as documented.

The real server (`incidents serve`) runs on a database of its own; schemathesis's CLI
generates requests from /openapi.json, valid and invalid, with a bounded number of
examples per operation and a fixed seed (TEST_SCHEMATHESIS_SEED picks another). No
operation is excluded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from incidents.api import examples
from incidents.migrate import upgrade
from tests.conftest import AUTH, TOKEN, throwaway_pg_database

MAX_EXAMPLES = 20
SEED = os.environ.get("TEST_SCHEMATHESIS_SEED", "20261123")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    # Each operation that declares the security schemes must refuse a request without them.
    "ignored_auth",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(pg_server: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`incidents serve` on a fresh PostgreSQL database; yields its URL and its log file."""
    with throwaway_pg_database("incidents_schemathesis") as db:
        upgrade(db)
        port = _free_port()
        env = {
            **os.environ,
            "INCIDENTS_DATABASE_URL": db,
            "INCIDENTS_API_TOKEN": TOKEN,
            "INCIDENTS_BROKER_URL": "",
            "INCIDENTS_CONFIG": "",
            "INCIDENTS_LOG_JSON": "false",
            "INCIDENTS_LOG_LEVEL": "WARNING",
        }
        log = tmp_path / "server.log"
        incidents = Path(sys.executable).parent / "incidents"
        with log.open("w") as out:
            server = subprocess.Popen(
                [
                    str(incidents),
                    "serve",
                    "--no-migrate",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
            yield url, log
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _seed(url: str) -> None:
    """Stored alerts and an incident, so the read operations answer with real bodies."""
    graph = {
        "services": [{"name": "api-gateway", "depends_on": ["billing-db"]}, {"name": "billing-db"}]
    }
    response = httpx.put(f"{url}/api/v1/services/graph", json=graph, headers=AUTH)
    assert response.status_code == 200, response.text
    for path, body in [
        ("/api/v1/alerts/alertmanager", examples.ALERTMANAGER_WEBHOOK),
        ("/api/v1/alerts", examples.GENERIC_ALERTS),
    ]:
        response = httpx.post(f"{url}{path}", content=orjson.dumps(body), headers=AUTH)
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + 20
    while not httpx.get(f"{url}/api/v1/incidents", headers=AUTH).json()["items"]:
        assert time.monotonic() < deadline, "no incident was opened"
        time.sleep(0.1)


def test_schemathesis_finds_no_server_error(served: tuple[str, Path], tmp_path: Path) -> None:
    url, log = served
    _seed(url)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        "--checks",
        ",".join(CHECKS),
        "--request-timeout",
        "20",
        "--workers",
        "1",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    report = done.stdout[-12000:]
    server_log = log.read_text()[-8000:]
    assert done.returncode == 0, (
        f"{report}\n--- server log ---\n{server_log}\n{done.stderr[-2000:]}"
    )
    assert "Tested: " in report
    # Everything the document lists was tested.
    selected = next(line for line in report.splitlines() if "Selected:" in line).split()[-1]
    tested = next(line for line in report.splitlines() if "Tested:" in line).split()[-1]
    assert tested == selected.split("/")[0], report
    assert "Traceback" not in server_log, server_log
