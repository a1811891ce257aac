"""The key before the body, and a size limit on every body (real HTTP where it matters)."""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Callable, Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from incidents.api.app import create_app
from tests.api.live import LiveServer, closed_by_server, live_server, read_response
from tests.conftest import AUTH, TOKEN, make_settings
from tests.unit.test_graph import random_document

HUNDRED_MB = 100 * 1024 * 1024
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
SILENCE = {
    "matchers": ['alertname="A"'],
    "ends_at": "2099-01-01T00:00:00Z",
    "created_by": "ops",
    "comment": "c",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with the default limits."""
    with live_server(tmp_path_factory.mktemp("limits")) as live:
        yield live


def head(method: str, path: str, length: int, auth: bool) -> bytes:
    """A request head that promises a body of `length` bytes."""
    lines = [f"{method} {path} HTTP/1.1", "Host: t", "Content-Type: application/json"]
    if auth:
        lines.append(f"Authorization: Bearer {TOKEN}")
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def push(sock: socket.socket, total: int) -> int:
    """Send up to `total` bytes of body until the server stops taking them; bytes sent."""
    chunk = b"x" * (1024 * 1024)
    sent = 0
    sock.settimeout(5)
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def test_no_key_gets_401_before_a_byte_of_a_100_mb_body(server: LiveServer) -> None:
    rss_before = server.rss_kib()
    for path in ("/api/v1/silences", "/api/v1/alerts/alertmanager", "/api/v1/services/graph"):
        method = "PUT" if path.endswith("graph") else "POST"
        with server.connect() as sock:
            sock.sendall(head(method, path, HUNDRED_MB, auth=False))
            status, headers, body = read_response(sock)  # no body byte sent yet
            assert status == 401, body
            assert len(headers["www-authenticate"]) == 2
            assert headers["connection"] == ["close"]
            assert closed_by_server(sock, within=2)
    # A sender that pushes its body anyway: the server neither keeps nor parses it.
    with server.connect() as sock:
        sock.sendall(head("POST", "/api/v1/silences", HUNDRED_MB, auth=False))
        assert read_response(sock)[0] == 401
        push(sock, HUNDRED_MB)
    time.sleep(0.2)
    assert server.rss_kib() - rss_before < 20 * 1024
    assert "Traceback" not in server.log()


def test_a_declared_body_over_the_limit_gets_413_before_it_is_sent(server: LiveServer) -> None:
    rss_before = server.rss_kib()
    with server.connect() as sock:
        sock.sendall(head("POST", "/api/v1/silences", HUNDRED_MB, auth=True))
        status, headers, body = read_response(sock)
        assert status == 413
        assert orjson.loads(body) == {
            "error": "payload_too_large",
            "message": f"body of {HUNDRED_MB} bytes is over the limit of 1048576 bytes",
            "field": "body",
        }
        assert headers["connection"] == ["close"]
        push(sock, HUNDRED_MB)
    assert server.rss_kib() - rss_before < 20 * 1024


def test_a_chunked_body_is_cut_off_at_the_limit(server: LiveServer) -> None:
    rss_before = server.rss_kib()
    with server.connect() as sock:
        sock.sendall(
            b"POST /api/v1/silences HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
        sent = 0
        sock.settimeout(5)
        try:
            while sent < HUNDRED_MB:
                sock.sendall(chunk)
                sent += 64 * 1024
        except OSError:
            pass
        assert sent < 20 * 1024 * 1024, "the server kept reading past the limit"
        status, _, body = read_response(sock)
        assert status == 413
        assert orjson.loads(body)["message"] == "body is over the limit of 1048576 bytes"
    assert server.rss_kib() - rss_before < 20 * 1024


def test_each_route_has_its_limit(sqlite_url: str, client_for: Callable[..., TestClient]) -> None:
    client = client_for(
        sqlite_url,
        http={"max_body_bytes": 1000, "graph_max_body_bytes": 5000},
        ingest={"max_body_bytes": 3000},
    )
    padded = orjson.dumps({**SILENCE, "comment": "x" * 2000})
    response = client.post("/api/v1/silences", content=padded, headers=JSON_AUTH)
    assert response.status_code == 413
    assert "limit of 1000 bytes" in response.json()["message"]
    small = orjson.dumps(SILENCE)
    assert client.post("/api/v1/silences", content=small, headers=JSON_AUTH).status_code == 201
    # The graph has a larger limit of its own.
    graph = orjson.dumps({"services": [{"name": f"svc-{i}"} for i in range(100)]})
    assert 1000 < len(graph) < 5000
    response = client.put("/api/v1/services/graph", content=graph, headers=AUTH)
    assert response.status_code == 200, response.text
    big = orjson.dumps({"services": [{"name": f"svc-{i}"} for i in range(400)]})
    response = client.put("/api/v1/services/graph", content=big, headers=AUTH)
    assert response.status_code == 413
    assert "limit of 5000 bytes" in response.json()["message"]
    # Ingest uses ingest.max_body_bytes.
    alerts = orjson.dumps([{"labels": {"alertname": "A", "pad": "x" * 1500}}])
    assert client.post("/api/v1/alerts", content=alerts, headers=AUTH).status_code == 200
    # A chunked body has no Content-Length: it is counted as it arrives.
    before = REGISTRY.get_sample_value(
        "incidents_ingest_rejected_total", {"source": "api", "status": "413"}
    )
    pieces = iter([padded[i : i + 100] for i in range(0, len(padded), 100)])
    response = client.post("/api/v1/silences", content=pieces, headers=JSON_AUTH)
    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "message": "body is over the limit of 1000 bytes",
        "field": "body",
    }
    after = REGISTRY.get_sample_value(
        "incidents_ingest_rejected_total", {"source": "api", "status": "413"}
    )
    assert after == (before or 0) + 1


def test_a_ten_thousand_service_graph_fits_the_graph_limit(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(sqlite_url)
    body = orjson.dumps(random_document(10_000, seed=7), option=orjson.OPT_INDENT_2)
    assert len(body) > client.app.state.service.settings.http.max_body_bytes  # type: ignore[attr-defined]
    response = client.put("/api/v1/services/graph", content=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["services"] == 10_000


def test_compressed_bodies_get_415_except_where_they_are_decoded(client: TestClient) -> None:
    body = gzip.compress(orjson.dumps(SILENCE))
    headers = {**JSON_AUTH, "Content-Encoding": "gzip"}
    response = client.post("/api/v1/silences", content=body, headers=headers)
    assert response.status_code == 415
    assert "uncompressed" in response.json()["message"]
    assert response.json()["field"] == "body"
    response = client.put("/api/v1/services/graph", content=body, headers=headers)
    assert response.status_code == 415
    identity = {**JSON_AUTH, "Content-Encoding": "identity"}
    response = client.post("/api/v1/silences", content=orjson.dumps(SILENCE), headers=identity)
    assert response.status_code == 201
    # The ingest endpoints decode gzip themselves: the guard lets them through.
    alerts = gzip.compress(orjson.dumps([{"labels": {"alertname": "A"}}]))
    response = client.post("/api/v1/alerts", content=alerts, headers=headers)
    assert response.status_code != 415


def test_public_endpoints_need_no_key(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path
    assert client.get("/").status_code != 401


def test_the_guard_applies_behind_a_proxy_prefix(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url, http={"max_body_bytes": 1000}))
    with TestClient(app, root_path="/incidents") as client:
        padded = orjson.dumps({**SILENCE, "comment": "x" * 2000})
        response = client.post("/incidents/api/v1/silences", content=padded, headers=JSON_AUTH)
        assert response.status_code == 413
        response = client.get("/incidents/api/v1/incidents")
        assert response.status_code == 401
        assert len(response.headers.get_list("www-authenticate")) == 2
        response = client.get("/incidents/api/v1/incidents", headers=AUTH)
        assert response.status_code == 200
