"""A real `incidents serve` process and raw-socket HTTP, for what a test client cannot show.

The server runs exactly as operators start it (the CLI, uvicorn, its protocol classes), on
a SQLite file, with its log in a file the test can read.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT, TOKEN

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A running server: its port, process and log."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def rss_kib(self) -> int:
        """The server's resident memory, in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def log(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def connect(self, timeout: float = 5.0) -> socket.socket:
        """A new TCP connection to the server."""
        return socket.create_connection((HOST, self.port), timeout=timeout)


@contextmanager
def live_server(tmp_dir: Path, **env: str) -> Iterator[LiveServer]:
    """Start `incidents serve` with the test token and extra INCIDENTS_* settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    environ.update(
        INCIDENTS_DATABASE_URL=f"sqlite:///{tmp_dir / 'live.db'}",
        INCIDENTS_API_TOKEN=TOKEN,
        INCIDENTS_LOG_JSON="false",
        **{f"INCIDENTS_{k.upper()}": v for k, v in env.items()},
    )
    port = free_port()
    log_path = tmp_dir / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "incidents.cli", "serve", "--host", HOST, "--port", str(port)],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(port, proc, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited:\n{server.log()}")
            try:
                status, _, _ = request(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def read_response(sock: socket.socket) -> tuple[int, dict[str, list[str]], bytes]:
    """One HTTP/1.1 response with a Content-Length: status, headers (lower-case), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    length = int(headers.get("content-length", ["0"])[0])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def request(server: LiveServer, raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """Send raw request bytes on a new connection and read the response."""
    with server.connect() as sock:
        sock.sendall(raw)
        return read_response(sock)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes the connection within the time (bytes sent are skipped)."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
