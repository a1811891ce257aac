"""`incidents postmortem` and `incidents report` against a stand-in that serves the
shapes of their endpoints (GET /api/v1/incidents/{id}/postmortem and
GET /api/v1/reports/summary), as the contract between the CLI and the API states them."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from incidents.cli import main

KEY = "stand-in-key"
MARKDOWN = "# Postmortem: incident 7\n\n## Timeline\n\n- 10:00 opened\n"
HTML = "<!doctype html><html><body><h1>Postmortem: incident 7</h1></body></html>"
REPORT: dict[str, Any] = {
    "from": "2026-11-01T00:00:00Z",
    "to": "2026-12-01T00:00:00Z",
    "incidents": {
        "total": 12,
        "by_severity": {"P0": 2, "P1": 4, "P2": 6},
        "by_service": [{"service": "api-gateway", "count": 7}, {"service": "db", "count": 5}],
        "by_team": [{"team": "platform", "count": 9}],
    },
    "time_to_acknowledge": {"count": 10, "mean_seconds": 312.5, "p90_seconds": 900.0},
    "time_to_resolve": {"count": 0, "mean_seconds": None, "p90_seconds": None},
    "top_root_causes": [{"service": "database-postgres", "count": 4}],
    "noisiest_alerts": {
        "most_fired": [{"alertname": "HighErrorRate", "service": "api-gateway", "fired": 41}],
        "paged_without_action": [{"alertname": "DiskFull", "service": "db", "incidents": 3}],
    },
}


@dataclass
class StandIn:
    """The stand-in's URL and the requests it saw (path, query, headers)."""

    url: str
    seen: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    """A local HTTP server answering the two endpoints."""
    holder: list[StandIn] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            holder[0].seen.append((parts.path, query, dict(self.headers)))
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                return self.answer(
                    401,
                    "application/json",
                    {"error": "unauthorized", "message": "invalid credentials"},
                )
            if parts.path == "/api/v1/reports/summary":
                body = {**REPORT, **{k: v[0] for k, v in query.items() if k in ("from", "to")}}
                return self.answer(200, "application/json", body)
            if parts.path == "/api/v1/incidents/7/postmortem":
                fmt = query.get("format", ["md"])[0]
                if fmt == "md":
                    return self.answer(200, "text/markdown; charset=utf-8", MARKDOWN)
                if fmt == "html":
                    return self.answer(200, "text/html; charset=utf-8", HTML)
                return self.answer(200, "application/json", {"incident": {"id": 7}})
            message = {"error": "not_found", "message": "no incident 8", "field": "incident_id"}
            return self.answer(404, "application/json", message)

        def answer(self, status: int, media: str, body: Any) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(StandIn(f"http://127.0.0.1:{httpd.server_address[1]}"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def run(
    stand_in: StandIn, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    def go(*args: str, key: str = KEY) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--url", stand_in.url, "--key", key])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def test_postmortem_to_stdout_and_to_a_file(
    stand_in: StandIn, run: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    code, out, err = run("postmortem", "7")
    assert (code, err) == (0, "")
    assert out == MARKDOWN
    path, query, headers = stand_in.seen[-1]
    assert (path, query) == ("/api/v1/incidents/7/postmortem", {"format": ["md"]})
    assert headers["Accept"] == "text/markdown"

    target = tmp_path / "pm.html"
    code, out, err = run("postmortem", "7", "--format", "html", "-o", str(target))
    assert (code, err) == (0, "")
    assert target.read_text(encoding="utf-8") == HTML
    assert f"written to {target}" in out
    assert stand_in.seen[-1][1] == {"format": ["html"]}
    code, out, _ = run("postmortem", "7", "--format", "json")
    assert json.loads(out) == {"incident": {"id": 7}}


def test_postmortem_errors(run: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    assert run("postmortem", "8")[::2] == (1, "incidents: no incident 8 (HTTP 404)\n")
    assert run("postmortem", "7", key="wrong")[::2] == (
        1,
        "incidents: invalid credentials (HTTP 401)\n",
    )
    unwritable = tmp_path / "no-such-dir" / "pm.md"
    code, _, err = run("postmortem", "7", "-o", str(unwritable))
    assert code == 1 and f"{unwritable}: cannot write" in err


def test_report_as_tables(stand_in: StandIn, run: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = run("report", "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01")
    assert (code, err) == (0, "")
    assert stand_in.seen[-1][1] == {"from": ["2026-11-01T00:00:00Z"], "to": ["2026-12-01"]}
    assert "Incidents from 2026-11-01T00:00:00Z to 2026-12-01: 12" in out
    assert "By severity: P0: 2, P1: 4, P2: 6" in out
    lines = out.splitlines()
    assert any(line.split() == ["api-gateway", "7"] for line in lines)
    assert any(line.split() == ["platform", "9"] for line in lines)
    assert any(line.split() == ["acknowledge", "10", "5m12s", "15m"] for line in lines)
    assert any(line.split() == ["resolve", "0", "-", "-"] for line in lines)
    assert any(line.split() == ["database-postgres", "4"] for line in lines)
    assert any(line.split() == ["HighErrorRate", "api-gateway", "41"] for line in lines)
    assert any(line.split() == ["DiskFull", "db", "3"] for line in lines)


def test_report_json_passes_through_and_bad_times_are_usage_errors(
    stand_in: StandIn, run: Callable[..., tuple[int, str, str]]
) -> None:
    code, out, _ = run("report", "-o", "json")
    assert code == 0
    assert json.loads(out) == REPORT
    assert stand_in.seen[-1][1] == {}
    before = len(stand_in.seen)
    code, _, err = run("report", "--from", "last tuesday")
    assert code == 2 and "--from: 'last tuesday' is not an ISO 8601 time" in err
    assert len(stand_in.seen) == before
