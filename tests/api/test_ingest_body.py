"""Large, compressed and interrupted bodies on the ingest endpoints."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.config import IngestSettings
from incidents.db import create_db_engine
from tests.api.test_ingest import WEBHOOK, count_rows
from tests.conftest import AUTH, ROOT, TOKEN
from tests.factories import am_alert, am_payload

OLD_LIMIT = 5 * 1024 * 1024


def storm(count: int) -> bytes:
    """One Alertmanager notification of `count` alerts, as a large group sends it."""
    alerts = []
    for i in range(count):
        labels = {
            "alertname": "KubePodCrashLooping",
            "namespace": f"team-{i % 40}",
            "pod": f"web-{i:06d}-7c9d8f6b5-x2k4q",
            "container": "app",
            "severity": "warning",
            "service": f"svc-{i % 200}",
            "cluster": "prod-eu-west-1",
        }
        summary = f"Pod team-{i % 40}/web-{i:06d} is restarting 2.5 times / 10 minutes"
        alerts.append(am_alert(labels, annotations={"summary": summary, "description": summary}))
    return orjson.dumps(am_payload(alerts))


def test_default_limit_takes_a_storm_of_50000_alerts() -> None:
    assert IngestSettings().max_body_bytes >= 50_000 * 800


def test_body_over_the_old_5_mib_limit_is_stored_whole(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    # The pipeline is not under test here; it would only slow the teardown.
    client = client_for(db_url, correlation={"enabled": False})
    body = storm(12_000)
    assert len(body) > OLD_LIMIT
    response = client.post(WEBHOOK, content=body, headers=AUTH)
    assert response.status_code == 200, response.text[:500]
    assert response.json()["alerts"] == 12_000
    assert count_rows(db_url, "alerts") == 12_000
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT body FROM webhook_deliveries")).scalar_one()
        [fingerprints] = conn.execute(sa.text("SELECT fingerprints FROM pipeline_jobs")).one()
    engine.dispose()
    assert stored.encode() == body
    if isinstance(fingerprints, str):
        fingerprints = orjson.loads(fingerprints)
    assert len(fingerprints) == 12_000


def test_gzip_body_is_decoded_and_stored(client: TestClient, db_url: str) -> None:
    body = orjson.dumps(am_payload([am_alert({"alertname": "Zipped", "service": "x"})]))
    response = client.post(
        WEBHOOK, content=gzip.compress(body), headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert count_rows(db_url, "alerts") == 1
    generic_body = orjson.dumps([{"labels": {"alertname": "Z2"}}])
    # Two gzip members, as `cat a.gz b.gz` makes them, are one body.
    members = gzip.compress(generic_body[:10]) + gzip.compress(generic_body[10:])
    generic = client.post(
        "/api/v1/alerts", content=members, headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert generic.status_code == 200, generic.text
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT body FROM webhook_deliveries ORDER BY id")).scalars()
        assert next(iter(raw)).encode() == body
    engine.dispose()


def test_gzip_bomb_gets_413_naming_the_limit(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(sqlite_url, ingest={"max_body_bytes": 1024 * 1024})
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces in about 64 KiB
    assert len(bomb) < 1024 * 1024
    response = client.post(WEBHOOK, content=bomb, headers={**AUTH, "Content-Encoding": "gzip"})
    assert response.status_code == 413, response.text
    assert response.json()["field"] == "body"
    assert "decompressed" in response.json()["message"]
    assert str(1024 * 1024) in response.json()["message"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not gzip at all", "not valid gzip"),
        (gzip.compress(b'{"version": "4"}')[:-12], "truncated"),
    ],
)
def test_broken_gzip_gets_400(
    sqlite_url: str, client_for: Callable[..., TestClient], data: bytes, message: str
) -> None:
    client = client_for(sqlite_url)
    response = client.post(WEBHOOK, content=data, headers={**AUTH, "Content-Encoding": "gzip"})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "body"
    assert message in response.json()["message"]


@pytest.mark.parametrize("coding", ["br", "deflate", "zstd", "gzip, br"])
def test_other_content_encodings_get_415_with_a_hint(
    sqlite_url: str, client_for: Callable[..., TestClient], coding: str
) -> None:
    client = client_for(sqlite_url)
    body = orjson.dumps(am_payload([am_alert({"alertname": "A"})]))
    response = client.post(WEBHOOK, content=body, headers={**AUTH, "Content-Encoding": coding})
    assert response.status_code == 415, response.text
    assert response.json()["field"] == "Content-Encoding"
    assert "gzip" in response.json()["message"]
    identity = client.post(WEBHOOK, content=body, headers={**AUTH, "Content-Encoding": "identity"})
    assert identity.status_code == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[int, Path]]:
    """`incidents serve` in a subprocess on SQLite; yields its port and log file."""
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update(
        INCIDENTS_DATABASE_URL=sqlite_url,
        INCIDENTS_API_TOKEN=TOKEN,
        INCIDENTS_LOG_JSON="false",
        INCIDENTS_LOG_LEVEL="INFO",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "incidents.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while b"Uvicorn running" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield port, log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_client_that_disconnects_mid_body_is_one_line_not_a_500(
    served: tuple[int, Path],
) -> None:
    port, log = served
    body = orjson.dumps(am_payload([am_alert({"alertname": "Cut", "pad": "x" * 4000})]))
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.2)  # the server has read the first half
    deadline = time.monotonic() + 10
    while b"client disconnected" not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = log.read_text()
    assert "client disconnected" in text, text
    assert "Traceback" not in text, text
    assert "ERROR" not in text, text
    access = [line for line in text.splitlines() if f"POST {WEBHOOK}" in line]
    assert access and " 500" not in access[-1] and "499" in access[-1], text


def test_large_and_small_bodies_in_one_commit_are_both_kept(db_url: str) -> None:
    from datetime import UTC, datetime

    from incidents.ingest.adapters import parse_alertmanager, parse_generic
    from incidents.ingest.store import Incoming, write_batch

    now = datetime.now(UTC)
    large = storm(2_500)
    small = orjson.dumps([{"labels": {"alertname": "Small"}}])
    assert len(large) > 1024 * 1024 > len(small)
    batch = [
        Incoming(parse_alertmanager(large, IngestSettings(), now), large, "large"),
        Incoming(parse_generic(small, IngestSettings(), now), small, "small"),
    ]
    engine = create_db_engine(db_url)
    try:
        with engine.begin() as conn:
            results = write_batch(conn, batch, now, 300.0)
        with engine.connect() as conn:
            bodies = dict(
                conn.execute(sa.text("SELECT request_id, body FROM webhook_deliveries")).all()
            )
    finally:
        engine.dispose()
    assert [r.duplicate for r in results] == [False, False]
    assert bodies == {"large": large.decode(), "small": small.decode()}
    assert count_rows(db_url, "alerts") == 2_501


def test_truncated_notification_is_logged(
    sqlite_url: str, client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(sqlite_url)
    body = {**am_payload([am_alert({"alertname": "Cut"})]), "truncatedAlerts": 7}
    with caplog.at_level("WARNING", logger="incidents.ingest.adapters"):
        response = client.post(WEBHOOK, content=orjson.dumps(body), headers=AUTH)
    assert response.status_code == 200
    assert any("left 7 alerts out" in r.getMessage() for r in caplog.records)
