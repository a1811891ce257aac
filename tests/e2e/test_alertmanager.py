"""End to end against the real Prometheus Alertmanager binary.

Alertmanager receives alerts on its own API and delivers its webhook to our service, which
runs as a subprocess on a throwaway SQLite database. A small in-process HTTP server takes a
copy of every notification, so a failure shows what Alertmanager actually sent.

Everything listens on 127.0.0.1 only; Alertmanager's HA gossip is switched off.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from incidents.ingest.fingerprint import label_fingerprint
from tests.conftest import ROOT, alertmanager_binary, require

pytestmark = pytest.mark.alertmanager

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


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("incidents")
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


@dataclass
class Alertmanager:
    proc: Proc
    client: httpx.Client
    capture: CaptureServer
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


# --- tests ---


def test_firing_then_resolved_through_real_alertmanager(alertmanager: Alertmanager) -> None:
    am, svc = alertmanager, alertmanager.service
    name = unique("E2EHighErrorRate")
    gateway = {"alertname": name, "severity": "critical", "service": "api-gateway", "env": "e2e"}
    redis = {"alertname": name, "severity": "warning", "service": "cache-redis", "env": "e2e"}
    am.post([am_alert(gateway), am_alert(redis)])

    def both_firing() -> list[dict[str, Any]] | None:
        items = svc.alerts(name)
        if len(items) == 2 and all(i["status"] == "firing" for i in items):
            return items
        return None

    items = wait_for("two firing alerts in our API", both_firing, DELIVERY_TIMEOUT, am.diagnostics)
    by_service = {i["service"]: i for i in items}
    assert set(by_service) == {"api-gateway", "cache-redis"}, items
    assert by_service["api-gateway"]["labels"] == gateway
    assert by_service["api-gateway"]["severity"] == "P0"
    assert by_service["cache-redis"]["labels"] == redis
    assert by_service["cache-redis"]["severity"] == "P2"
    for item in items:
        assert item["ends_at"] is None, item
        assert item["source"] == "alertmanager"
        assert item["annotations"]["summary"].startswith(name)
        assert item["generator_url"] == "http://prometheus.example/graph?g0.expr=up"

    # Our fingerprints are Alertmanager's, and equal to the Prometheus label hash.
    theirs = {a["labels"]["service"]: a["fingerprint"] for a in am.alerts(name)}
    ours = {svc_name: i["fingerprint"] for svc_name, i in by_service.items()}
    assert ours == theirs, am.diagnostics()
    assert ours["api-gateway"] == label_fingerprint(gateway)
    assert ours["cache-redis"] == label_fingerprint(redis)
    for fingerprint in ours.values():
        one = svc.client.get(f"/api/v1/alerts/{fingerprint}")
        assert one.status_code == 200, one.text
        assert one.json()["fingerprint"] == fingerprint

    # What Alertmanager sent: payload version 4, its own fingerprints, its startsAt.
    firing_payloads = [c for c in am.capture.payloads(name) if c.json()["status"] == "firing"]
    assert len(firing_payloads) == 1, am.diagnostics()
    payload = firing_payloads[0].json()
    assert payload["version"] == "4"
    assert payload["receiver"] == "incidents"
    sent_alerts = {a["labels"]["service"]: a for a in payload["alerts"]}
    assert {k: a.get("fingerprint") for k, a in sent_alerts.items()} == ours
    for svc_name, item in by_service.items():
        their_start = parse_time(sent_alerts[svc_name]["startsAt"])
        assert abs(parse_time(item["starts_at"]) - their_start) < timedelta(milliseconds=1)

    # Resolve: the same alerts with an end in the past.
    resolved_at = parse_time(rfc3339(datetime.now(UTC) - timedelta(seconds=1)))
    am.post([am_alert(gateway, ends_at=resolved_at), am_alert(redis, ends_at=resolved_at)])

    def both_resolved() -> list[dict[str, Any]] | None:
        items = svc.alerts(name)
        if len(items) == 2 and all(i["status"] == "resolved" for i in items):
            return items
        return None

    items = wait_for(
        "two resolved alerts in our API", both_resolved, DELIVERY_TIMEOUT, am.diagnostics
    )
    assert {i["fingerprint"] for i in items} == set(ours.values())
    for item in items:
        assert item["ends_at"] is not None, item
        # Alertmanager passes on the endsAt we gave it; we store exactly that.
        assert parse_time(item["ends_at"]) == resolved_at, (item, resolved_at)
        assert parse_time(item["starts_at"]) <= resolved_at, item


def test_resent_notifications_do_not_duplicate_rows(alertmanager: Alertmanager) -> None:
    am, svc = alertmanager, alertmanager.service
    name = unique("E2EDiskFull")
    first = {"alertname": name, "severity": "warning", "service": "cache-redis", "disk": "sda"}
    second = {"alertname": name, "severity": "warning", "service": "cache-redis", "disk": "sdb"}
    third = {"alertname": name, "severity": "critical", "service": "api-gateway", "disk": "sdc"}
    am.post([am_alert(first), am_alert(second)])

    def stored(count: int) -> Callable[[], list[dict[str, Any]] | None]:
        def probe() -> list[dict[str, Any]] | None:
            items = svc.alerts(name)
            return items if len(items) == count else None

        return probe

    wait_for("the first two alerts", stored(2), DELIVERY_TIMEOUT, am.diagnostics)

    # A new alert in the same group: Alertmanager re-sends the whole group, the first two again.
    am.post([am_alert(third)])
    wait_for("the third alert", stored(3), DELIVERY_TIMEOUT, am.diagnostics)

    def group_resent() -> list[dict[str, Any]] | None:
        items = svc.alerts(name)
        counts = {i["labels"]["disk"]: i["receive_count"] for i in items}
        return items if counts.get("sda", 0) >= 2 and counts.get("sdb", 0) >= 2 else None

    items = wait_for("the re-sent group to be counted", group_resent, 10, am.diagnostics)
    # Two notifications (2 alerts, then all 3): one row per distinct alert, counted per receipt.
    sizes = [len(c.json()["alerts"]) for c in am.capture.payloads(name)]
    assert sizes == [2, 3], (sizes, am.diagnostics())
    assert len(items) == 3, items
    counts = {i["fingerprint"]: i["receive_count"] for i in items}
    assert counts == {
        label_fingerprint(first): 2,
        label_fingerprint(second): 2,
        label_fingerprint(third): 1,
    }, items

    # Replaying a notification byte for byte (a retry after a lost response) stores nothing.
    last = am.capture.payloads(name)[-1]
    before = {i["fingerprint"]: i["receive_count"] for i in svc.alerts(name)}
    replay = svc.client.post(
        HOOK_PATH, content=last.body, headers={"content-type": "application/json"}
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "duplicate", replay.json()
    after = {i["fingerprint"]: i["receive_count"] for i in svc.alerts(name)}
    assert after == before


def test_wrong_token_stores_nothing(alertmanager: Alertmanager) -> None:
    am, svc = alertmanager, alertmanager.service
    name = unique("E2EIntruder")
    labels = {"alertname": name, "severity": "critical", "service": "api-gateway"}
    am.post([am_alert({**labels, "route": "wrong-token"})])

    # The capture server sits in the same receiver: once it has the notification,
    # Alertmanager has tried our endpoint with the wrong token as well.
    wait_for(
        "the wrong-token receiver to notify",
        lambda: am.capture.payloads(name) or None,
        DELIVERY_TIMEOUT,
        am.diagnostics,
    )

    def rejected() -> bool | None:
        text = am.client.get("/metrics").text
        for line in text.splitlines():
            if (
                line.startswith("alertmanager_notifications_failed_total")
                and 'integration="webhook"' in line
                and float(line.rsplit(" ", 1)[1]) >= 1
            ):
                return True
        return None

    wait_for("Alertmanager to count a failed webhook", rejected, 10, am.diagnostics)
    assert am.capture.payloads(name)[0].json()["receiver"] == "wrong-token"
    assert svc.alerts(name) == []
    unknown = svc.client.get(
        f"/api/v1/alerts/{label_fingerprint({**labels, 'route': 'wrong-token'})}"
    )
    assert unknown.status_code == 404, unknown.text
