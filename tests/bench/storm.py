"""A storm in one body: 50,000 alerts of about 800 bytes (about 40 MB) in one webhook.

Two fresh servers on throwaway databases:

- one whose pipeline jobs go to a broker nobody reads (memory://), so that its peak
  RSS (VmHWM, reset just before the body is sent) is what taking the body costs: read,
  parse, write, answer;
- one with the embedded worker, for the time the pipeline takes for that job, and the
  server's peak RSS while it runs.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg

from tests.bench.service import HOST, TOKEN, Server, throwaway_database
from tests.factories import am_alert, am_payload

PATH = "/api/v1/alerts/alertmanager"
ALERTS = 50_000
PIPELINE_LIMIT_SECONDS = 600.0


def storm_body(count: int = ALERTS) -> bytes:
    """One Alertmanager notification of `count` kube-prometheus-like alerts."""
    alerts = []
    for i in range(count):
        labels = {
            "alertname": "KubePodCrashLooping",
            "namespace": f"team-{i % 40}",
            "pod": f"web-{i:06d}-7c9d8f6b5-x2k4q",
            "container": "app",
            "job": "kube-state-metrics",
            "severity": "warning",
            "service": f"svc-{i % 200}",
            "cluster": "prod-eu-west-1",
            "prometheus": "monitoring/k8s",
            "instance": f"10.{i % 250}.{i // 250 % 250}.7:8080",
        }
        annotations = {
            "summary": f"Pod team-{i % 40}/web-{i:06d} is crash looping",
            "description": "Pod is restarting 2.5 times / 10 minutes. " * 5,
            "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/x",
        }
        alerts.append(am_alert(labels, annotations=annotations))
    return orjson.dumps(am_payload(alerts))


def _status_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def _reset_peak(pid: int) -> None:
    # Writing 5 resets VmHWM to the current RSS (Linux 4.0+).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _post(port: int, body: bytes) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection(HOST, port, timeout=300)
    started = time.perf_counter()
    try:
        conn.request(
            "POST",
            PATH,
            body=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        return response.status, response.read(), time.perf_counter() - started
    finally:
        conn.close()


def _pipeline_seconds(url: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < PIPELINE_LIMIT_SECONDS:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status <> 'done'), count(*) FROM pipeline_jobs"
            ).fetchone()
        if row is not None and row[1] and row[0] == 0:
            return time.monotonic() - started
        time.sleep(0.2)
    return float("inf")


@dataclass
class StormFigures:
    """What one storm body cost the server."""

    body_bytes: int
    status: int
    accept_seconds: float
    rss_before_mib: float
    peak_mib: float
    rss_after_mib: float
    stored: int
    pipeline_seconds: float
    pipeline_peak_mib: float


def run() -> StormFigures:
    """Send the storm to both servers; return the figures."""
    body = storm_body()
    with throwaway_database("storm_rss") as url:
        server = Server(url, "WARNING", broker_url="memory://")
        try:
            server.start()
            _post(server.port, orjson.dumps(am_payload([am_alert({"alertname": "Warm"})])))
            before = _status_kib(server.pid)
            _reset_peak(server.pid)
            status, answer, seconds = _post(server.port, body)
            after = _status_kib(server.pid)
        finally:
            server.close()
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM alerts").fetchone()
        stored = int(row[0]) if row else 0
    with throwaway_database("storm_pipeline") as url:
        server = Server(url, "WARNING")
        try:
            server.start()
            _reset_peak(server.pid)
            _post(server.port, body)
            pipeline = _pipeline_seconds(url)
            pipeline_peak = _status_kib(server.pid)["VmHWM"]
        finally:
            server.close()
    if status != 200:
        print(f"      ! storm answered {status}: {answer[:300]!r}")
    return StormFigures(
        body_bytes=len(body),
        status=status,
        accept_seconds=seconds,
        rss_before_mib=before["VmRSS"] / 1024,
        peak_mib=after["VmHWM"] / 1024,
        rss_after_mib=after["VmRSS"] / 1024,
        stored=stored,
        pipeline_seconds=pipeline,
        pipeline_peak_mib=pipeline_peak / 1024,
    )


def lines(f: StormFigures) -> list[str]:
    """The printed summary."""
    return [
        f"one body of {ALERTS:,} alerts ({f.body_bytes / 2**20:.1f} MiB, "
        f"{f.body_bytes // ALERTS} bytes an alert): HTTP {f.status} in {f.accept_seconds:.1f} s, "
        f"{f.stored:,} alerts stored",
        f"  server RSS {f.rss_before_mib:.0f} MiB before, peak {f.peak_mib:.0f} MiB while it "
        f"arrived ({f.peak_mib - f.rss_before_mib:+.0f} MiB, "
        f"{(f.peak_mib - f.rss_before_mib) * 2**20 / f.body_bytes:.1f}x the body), "
        f"{f.rss_after_mib:.0f} MiB after",
        f"  embedded pipeline for its one job: {f.pipeline_seconds:.1f} s, server peak RSS "
        f"{f.pipeline_peak_mib:.0f} MiB",
    ]
