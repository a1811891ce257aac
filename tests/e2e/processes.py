"""Processes and helpers for the end-to-end tests: our service, Alertmanager, a receiver
that records what Alertmanager sends, and waiting with diagnostics."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import ROOT

TOKEN = "e2e-secret-token"
WRONG_TOKEN = "not-the-token"
START_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 30.0
HOOK_PATH = "/api/v1/alerts/alertmanager"

T = TypeVar("T")


# --- helpers ---


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time from us or from Alertmanager (Go writes up to nanoseconds)."""
    text = text.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Proc:
    """A subprocess with its combined output in a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        state = "running" if self.popen.poll() is None else f"exited {self.popen.returncode}"
        return f"--- {self.name} ({state}), last lines of {self.log} ---\n{tail(self.log)}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
        )
    return Proc(name, popen, log)


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    diagnostics: Callable[[], str],
    procs: tuple[Proc, ...] = (),
) -> T:
    """Call `probe` until it returns something other than None; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        for proc in procs:
            if proc.popen.poll() is not None:
                pytest.fail(f"{proc.name} exited while waiting for {what}\n{diagnostics()}")
        try:
            value = probe()
        except (httpx.HTTPError, AssertionError, KeyError, ValueError) as exc:
            value, last_error = None, f"{type(exc).__name__}: {exc}"
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for {what}"
                f"{' (last error: ' + last_error + ')' if last_error else ''}\n{diagnostics()}"
            )
        time.sleep(0.2)


# --- a receiver that records what Alertmanager sends ---


@dataclass
class Captured:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CaptureServer:
    url: str
    log: Path
    requests: list[Captured] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, captured: Captured) -> None:
        with self.lock:
            self.requests.append(captured)
            with self.log.open("ab") as out:
                out.write(captured.body.rstrip() + b"\n")

    def payloads(self, alertname: str) -> list[Captured]:
        with self.lock:
            return [
                r for r in self.requests if r.json()["groupLabels"].get("alertname") == alertname
            ]

    def describe(self) -> str:
        with self.lock:
            bodies = [r.body.decode(errors="replace")[:1500] for r in self.requests[-5:]]
        header = f"--- last {len(bodies)} captured notifications (all in {self.log}) ---\n"
        return header + "\n".join(bodies)


# --- our service ---


@dataclass
class Service:
    proc: Proc
    base_url: str
    client: httpx.Client

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        response = self.client.get(
            "/api/v1/alerts", params={"filter": f'alertname="{alertname}"', "limit": 1000}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["next_cursor"] is None
        items: list[dict[str, Any]] = page["items"]
        return items


def incidents_argv() -> list[str]:
    script = Path(sys.executable).with_name("incidents")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "incidents.cli", "serve"]


@dataclass
class Alertmanager:
    proc: Proc
    client: httpx.Client
    capture: CaptureServer | None
    service: Service

    def post(self, alerts: list[dict[str, Any]]) -> None:
        response = self.client.post("/api/v2/alerts", json=alerts)
        assert response.status_code == 200, f"{response.status_code} {response.text}"

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        response = self.client.get("/api/v2/alerts", params={"filter": f'alertname="{alertname}"'})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()
        return items

    def diagnostics(self) -> str:
        return "\n".join([self.proc.logs(), self.service.proc.logs(), self.capture.describe()])


def am_alert(labels: dict[str, str], *, ends_at: datetime | None = None) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} on {labels.get('service', '?')}"},
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
    }
    if ends_at is not None:
        alert["endsAt"] = rfc3339(ends_at)
    return alert


def unique(prefix: str) -> str:
    return f"{prefix}{time.time_ns() % 10**9}"
