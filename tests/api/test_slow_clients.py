"""Slow and vanishing clients against a real server: header, body and keep-alive timeouts,
the connection limit, and a client that leaves mid-body."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.api.live import LiveServer, closed_by_server, live_server, read_response, request
from tests.conftest import TOKEN

AUTH_LINE = f"Authorization: Bearer {TOKEN}\r\n".encode()
TIMEOUT = 0.5
# The server's event loop reads its clock once per iteration: a timer may fire a few ms early.
EARLY = TIMEOUT - 0.05


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with short timeouts for every test of this module."""
    with live_server(
        tmp_path_factory.mktemp("slow"),
        http__header_timeout_seconds=str(TIMEOUT),
        http__body_timeout_seconds=str(TIMEOUT),
        http__keep_alive_timeout_seconds="1",
    ) as live:
        yield live


def test_headers_that_never_finish_get_408_and_the_connection_closes(server: LiveServer) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"POST /api/v1/alerts HTTP/1.1\r\nHost: t\r\nContent-Le")
        status, headers, body = read_response(sock)
        assert status == 408
        assert b"headers did not arrive in time" in body
        assert headers["connection"] == ["close"]
        assert closed_by_server(sock, within=2)
        assert EARLY <= time.monotonic() - started < TIMEOUT + 2


def test_a_connection_that_sends_nothing_is_closed(server: LiveServer) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        assert closed_by_server(sock, within=TIMEOUT + 2)
        assert time.monotonic() - started >= EARLY


def test_a_slow_head_after_a_kept_alive_request_gets_408(server: LiveServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[0] == 200
        # The next request starts within the keep-alive time but its headers never end.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        assert read_response(sock)[0] == 408
        assert closed_by_server(sock, within=2)


def test_requests_that_arrive_in_pieces_within_the_time_are_served(server: LiveServer) -> None:
    with server.connect() as sock:
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: t\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(TIMEOUT / 4)
        assert read_response(sock)[0] == 200
        # A kept-alive connection serves the next request as usual.
        time.sleep(TIMEOUT * 1.5)  # longer than the head deadline, shorter than keep-alive
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_an_idle_kept_alive_connection_is_closed(server: LiveServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[0] == 200
        started = time.monotonic()
        assert closed_by_server(sock, within=3)
        assert time.monotonic() - started >= 0.8


@pytest.mark.parametrize(
    "path", ["/api/v1/alerts/alertmanager", "/api/v1/silences", "/api/v1/services/graph"]
)
def test_a_body_that_stops_arriving_gets_408(server: LiveServer, path: str) -> None:
    method = b"PUT" if path.endswith("graph") else b"POST"
    with server.connect() as sock:
        sock.sendall(
            method
            + b" "
            + path.encode()
            + b" HTTP/1.1\r\nHost: t\r\n"
            + AUTH_LINE
            + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"alerts": ['
        )
        started = time.monotonic()
        status, headers, body = read_response(sock)
        assert status == 408, body
        assert EARLY <= time.monotonic() - started < TIMEOUT + 2
        answer = orjson.loads(body)
        assert answer["error"] == "request_timeout"
        assert f"{TIMEOUT:g} seconds" in answer["message"]
        assert headers["connection"] == ["close"]
        assert closed_by_server(sock, within=2)
    assert "Traceback" not in server.log()


def test_a_client_that_leaves_mid_body_is_no_error(server: LiveServer) -> None:
    for path in ("/api/v1/alerts/alertmanager", "/api/v1/silences"):
        with server.connect() as sock:
            sock.sendall(
                b"POST "
                + path.encode()
                + b" HTTP/1.1\r\nHost: t\r\n"
                + AUTH_LINE
                + b'Content-Length: 1000\r\n\r\n{"alerts": ['
            )
            time.sleep(0.1)
    time.sleep(0.3)
    assert request(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
    log = server.log()
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    assert " 500" not in log
    assert "POST /api/v1/alerts/alertmanager 499" in log


def test_connections_beyond_the_limit_get_503(tmp_path: Path) -> None:
    with live_server(tmp_path, http__max_connections="3") as limited:
        idle = [limited.connect() for _ in range(3)]
        try:
            time.sleep(0.2)
            status, _, body = request(limited, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert status == 503, body
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)
        assert request(limited, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
