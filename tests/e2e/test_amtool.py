"""The real amtool manages our silences, and reads our alerts, through the Alertmanager v2
API shape.

Our service runs as a subprocess (uvicorn, embedded workers) on a free port, on SQLite
and then on PostgreSQL;
amtool talks to it with the token as basic-auth password, in the URL or in an HTTP
config file, exactly as an operator would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidents.routing.matchers import parse_matcher
from tests.conftest import require, throwaway_pg_database
from tests.e2e.processes import (
    START_TIMEOUT,
    Proc,
    free_port,
    incidents_argv,
    parse_time,
    spawn,
    wait_for,
)
from tests.factories import am_alert, am_payload

pytestmark = pytest.mark.alertmanager

TOKEN = "amtool-e2e-token"


@dataclass
class Server:
    proc: Proc
    port: int
    client: httpx.Client
    amtool_bin: str
    tmp: Path

    def amtool(self, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run amtool against the server; the token travels as the basic-auth password."""
        url = url or f"http://amtool:{TOKEN}@127.0.0.1:{self.port}"
        return subprocess.run(
            [self.amtool_bin, f"--alertmanager.url={url}", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env={k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        )

    def ok(self, *args: str) -> str:
        done = self.amtool(*args)
        assert done.returncode == 0, f"amtool {args}: {done.stderr}\n{self.proc.logs()}"
        return done.stdout

    def add(self, *matchers: str, comment: str = "e2e") -> str:
        return self.ok("silence", "add", f"--comment={comment}", "--author=e2e", *matchers).strip()

    def silence(self, silence_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v2/silence/{silence_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database for the server: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('amtool-db') / 'incidents.db'}"
        return
    request.getfixturevalue("pg_server")
    with throwaway_pg_database("incidents_amtool") as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Server]:
    amtool_bin = shutil.which("amtool")
    if amtool_bin is None:
        require("amtool", "no amtool on PATH; install the prometheus-alertmanager package")
    assert amtool_bin is not None
    tmp = tmp_path_factory.mktemp("amtool")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update(
        INCIDENTS_DATABASE_URL=database,
        INCIDENTS_API_TOKEN=TOKEN,
        INCIDENTS_HOST="127.0.0.1",
        INCIDENTS_PORT=str(port),
        INCIDENTS_CONFIG="",
        INCIDENTS_BROKER_URL="",
        INCIDENTS_LOG_JSON="false",
        PYTHONUNBUFFERED="1",
    )
    proc = spawn("incidents serve", incidents_argv(), tmp / "incidents.log", env)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
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
        yield Server(proc, port, client, amtool_bin, tmp)
    finally:
        client.close()
        proc.stop()


def listed(output: str) -> set[str]:
    return {line.strip() for line in output.splitlines() if line.strip()}


def test_amtool_adds_queries_and_expires_a_silence(server: Server) -> None:
    silence_id = server.add("alertname=DiskFull", 'instance=~"web-.*"', comment="disk swap")
    assert silence_id in listed(server.ok("silence", "query", "-q"))
    assert silence_id in listed(server.ok("silence", "query", "-q", "alertname=DiskFull"))
    assert silence_id not in listed(server.ok("silence", "query", "-q", "alertname=Other"))
    assert silence_id not in listed(server.ok("silence", "query", "-q", "--expired"))
    table = server.ok("silence", "query")
    assert 'alertname="DiskFull"' in table
    assert 'instance=~"web-.*"' in table
    shown = server.silence(silence_id)
    assert shown["comment"] == "disk swap"
    assert shown["createdBy"] == "e2e"
    assert shown["status"]["state"] == "active"

    before = datetime.now(UTC)
    server.ok("silence", "expire", silence_id)
    after = datetime.now(UTC)
    assert silence_id not in listed(server.ok("silence", "query", "-q"))
    # amtool tells expired silences by their endsAt, which expiring set to now.
    assert silence_id in listed(server.ok("silence", "query", "-q", "--expired"))
    ended = parse_time(server.silence(silence_id)["endsAt"])
    assert before - timedelta(seconds=1) <= ended <= after
    assert server.silence(silence_id)["status"]["state"] == "expired"


def test_amtool_updates_a_silence_in_place(server: Server) -> None:
    silence_id = server.add("job=batch")
    server.ok("silence", "update", silence_id, "--duration=3h", "--comment=longer")
    shown = server.silence(silence_id)
    assert shown["comment"] == "longer"
    assert parse_time(shown["endsAt"]) > datetime.now(UTC) + timedelta(hours=2)
    server.ok("silence", "expire", silence_id)


def test_amtool_authenticates_with_an_http_config_file(server: Server) -> None:
    config = server.tmp / "http.yml"
    config.write_text(f"basic_auth:\n  username: amtool\n  password: {TOKEN}\n")
    url = f"http://127.0.0.1:{server.port}"
    done = server.amtool(f"--http.config.file={config}", "silence", "query", "-q", url=url)
    assert done.returncode == 0, done.stderr
    refused = server.amtool("silence", "query", "-q", url=url)
    assert refused.returncode != 0
    assert "401" in refused.stderr


# amtool parses each argument as one matcher itself (this amtool with Alertmanager's
# classic grammar) and sends them as JSON: what it stores must be what our parser makes of
# the same text.
AMTOOL_READS = [
    ["alertname=DiskFull"],
    ['alertname="Disk full"', 'severity!="info"'],
    ['instance=~"web-[0-9]+"', 'env!~"dev|test"'],
    ["tricky=~~~"],
    ['contains_comma=~"a,b"', 'quote="say \\"hi\\""'],
    ["job=bar baz"],
    ["team=ops,tier=1"],
    ["path=C:\\temp\\n"],
]


@pytest.mark.parametrize("args", AMTOOL_READS, ids=lambda a: " ".join(a))
def test_amtool_and_our_parser_read_matchers_alike(server: Server, args: list[str]) -> None:
    silence_id = server.add(*args)
    theirs = [
        (m["name"], m["isRegex"], m["isEqual"], m["value"])
        for m in server.silence(silence_id)["matchers"]
    ]
    ours = [(m.name, m.is_regex, m.is_equal, m.value) for m in map(parse_matcher, args)]
    assert sorted(theirs) == sorted(ours)
    server.ok("silence", "expire", silence_id)


@pytest.mark.parametrize("text", ['alertname=="X"', 'job="unterminated', 'job=a"b'])
def test_what_amtool_refuses_we_refuse(server: Server, text: str) -> None:
    done = server.amtool("silence", "add", "--comment=x", text)
    assert done.returncode != 0
    assert "unescaped double quote" in done.stderr
    response = server.client.get("/api/v1/alerts", params={"filter": text})
    assert response.status_code == 422
    assert "unescaped double quote" in response.json()["message"]


def wait_until(what: str, probe: Any, server: Server, timeout: float = 15.0) -> Any:
    return wait_for(what, probe, timeout, server.proc.logs, (server.proc,))


def alert_state(server: Server, fingerprint: str) -> dict[str, Any] | None:
    response = server.client.get(f"/api/v1/alerts/{fingerprint}")
    return response.json() if response.status_code == 200 else None


def test_a_silence_added_with_amtool_mutes_an_alert_posted_afterwards(server: Server) -> None:
    silence_id = server.add("alertname=NodeDown", 'instance=~"node-[0-9]+"')
    now = datetime.now(UTC)
    muted = am_alert(
        {"alertname": "NodeDown", "instance": "node-7", "service": "nodes"}, starts_at=now
    )
    loud = am_alert(
        {"alertname": "NodeDown", "instance": "gpu-1", "service": "nodes"}, starts_at=now
    )
    response = server.client.post("/api/v1/alerts/alertmanager", json=am_payload([muted, loud]))
    assert response.status_code == 200, response.text

    def opened() -> list[str] | None:
        items = server.client.get("/api/v1/incidents").json()["items"]
        joined = [fp for i in items for fp in i["alert_fingerprints"]]
        return joined if loud["fingerprint"] in joined else None

    joined = wait_until("the unmuted alert to open an incident", opened, server)
    assert muted["fingerprint"] not in joined
    assert alert_state(server, muted["fingerprint"])["silenced_by"] == [silence_id]  # type: ignore[index]
    assert alert_state(server, loud["fingerprint"])["silenced_by"] == []  # type: ignore[index]


def test_a_catastrophic_regex_neither_stalls_the_service_nor_the_pipeline(server: Server) -> None:
    # A backtracking engine takes 2^n steps on this pattern and value, holding the GIL.
    long_value = "a" * 10_000 + "b"
    silence_id = server.add('instance=~"(a+)+"', "alertname=Greedy")
    now = datetime.now(UTC)
    labels = {"alertname": "Greedy", "instance": long_value, "service": "edge"}
    greedy = am_alert(labels, starts_at=now)
    response = server.client.post("/api/v1/alerts/alertmanager", json=am_payload([greedy]))
    assert response.status_code == 200, response.text

    results: dict[str, Any] = {}

    def filtered() -> None:
        began = time.perf_counter()
        try:
            results["response"] = server.client.get(
                "/api/v1/alerts", params={"filter": 'instance=~"(a+)+"'}, timeout=10
            )
        except httpx.HTTPError as exc:
            results["error"] = exc
        results["seconds"] = time.perf_counter() - began

    worker = threading.Thread(target=filtered)
    worker.start()
    slowest = 0.0
    while worker.is_alive() or slowest == 0.0:
        began = time.perf_counter()
        health = server.client.get("/healthz", timeout=5)
        slowest = max(slowest, time.perf_counter() - began)
        assert health.status_code == 200
    worker.join()
    assert "error" not in results, results
    assert results["response"].status_code == 200
    assert results["response"].json()["items"] == []  # the value ends in "b"
    assert results["seconds"] < 2.0
    assert slowest < 1.0

    # The pipeline got past the silence's regex: the alert opened its incident, unmuted.
    def opened() -> bool | None:
        items = server.client.get("/api/v1/incidents").json()["items"]
        return (
            True if any(greedy["fingerprint"] in i["alert_fingerprints"] for i in items) else None
        )

    wait_until("the alert to open an incident", opened, server, timeout=10)
    assert alert_state(server, greedy["fingerprint"])["silenced_by"] == []  # type: ignore[index]
    server.ok("silence", "expire", silence_id)


# `amtool alert query` reads our firing alerts through GET /api/v2/alerts: a silence made
# with amtool mutes one, the default inhibition rule (a P0 mutes the P2 and P3 alerts of
# its service) another, and amtool's own flags pick active, silenced or inhibited alerts.


def _firing(name: str, **labels: str) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(minutes=1)
    return am_alert({"alertname": name, **labels}, starts_at=start)


def _names(output: str) -> set[tuple[str, str]]:
    """(alertname, instance) of each alert amtool printed as JSON."""
    return {(a["labels"]["alertname"], a["labels"].get("instance", "")) for a in json.loads(output)}


def _wait_processed(server: Server, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        shown = server.client.get("/api/v2/alerts", params={"filter": 'test="amtool-alerts"'})
        assert shown.status_code == 200, shown.text
        alerts: list[dict[str, Any]] = shown.json()
        states = [a["status"]["state"] for a in alerts]
        if len(alerts) == count and "unprocessed" not in states:
            return alerts
        assert time.monotonic() < deadline, f"not processed: {states}\n{server.proc.logs()}"
        time.sleep(0.2)


def test_amtool_alert_query_sees_active_silenced_and_inhibited_alerts(server: Server) -> None:
    silence_id = server.add("alertname=DiskFull", "instance=web-2", comment="disk swap")
    common = {"test": "amtool-alerts"}
    alerts = [
        _firing("DiskFull", instance="web-1", service="web", severity="warning", **common),
        _firing("DiskFull", instance="web-2", service="web", severity="warning", **common),
        _firing("ApiDown", instance="api-1", service="api", severity="critical", **common),
        _firing("ApiSlow", instance="api-1", service="api", severity="warning", **common),
    ]
    posted = server.client.post("/api/v1/alerts/alertmanager", json=am_payload(alerts))
    assert posted.status_code == 200, posted.text
    processed = _wait_processed(server, 4)
    shown = {a["labels"]["alertname"] + a["labels"]["instance"]: a for a in processed}
    assert shown["DiskFullweb-2"]["status"] == {
        "state": "suppressed",
        "silencedBy": [silence_id],
        "inhibitedBy": [],
        "mutedBy": [],
    }
    api_down = shown["ApiDownapi-1"]
    assert shown["ApiSlowapi-1"]["status"]["inhibitedBy"] == [api_down["fingerprint"]]
    assert api_down["receivers"] == [{"name": "incidents"}]

    query = ("alert", "query", "-o", "json", "test=amtool-alerts")
    # No state flag: amtool asks for the active alerts only.
    assert _names(server.ok(*query)) == {("DiskFull", "web-1"), ("ApiDown", "api-1")}
    assert _names(server.ok(*query, "--silenced")) == {("DiskFull", "web-2")}
    assert _names(server.ok(*query, "--inhibited")) == {("ApiSlow", "api-1")}
    everything = server.ok(*query, "--active", "--silenced", "--inhibited", "--unprocessed")
    assert len(_names(everything)) == 4
    # Matchers and the receiver regex filter as Alertmanager's do.
    assert _names(server.ok(*query, 'instance=~"web-.*"')) == {("DiskFull", "web-1")}
    assert _names(server.ok(*query, "--receiver=incid.*")) == {
        ("DiskFull", "web-1"),
        ("ApiDown", "api-1"),
    }
    assert _names(server.ok(*query, "--receiver=slack")) == set()
    # The default table names the alert as amtool prints it for Alertmanager.
    assert "ApiDown" in server.ok("alert", "query", "test=amtool-alerts")

    # A resolved alert is gone, as it is from Alertmanager.
    resolved = dict(alerts[0], status="resolved", endsAt=datetime.now(UTC).isoformat())
    gone = server.client.post("/api/v1/alerts/alertmanager", json=am_payload([resolved]))
    assert gone.status_code == 200, gone.text
    _wait_processed(server, 3)
    assert ("DiskFull", "web-1") not in _names(server.ok(*query))
    server.ok("silence", "expire", silence_id)


def test_a_bad_filter_is_a_400_that_amtool_shows(server: Server) -> None:
    done = server.amtool("alert", "query", 'alertname=~"(a)\\1"')
    assert done.returncode != 0
    bad = server.client.get("/api/v2/alerts", params={"filter": 'alertname=="X"'})
    assert bad.status_code == 400
    assert bad.json().startswith("filter[0]: ")
    refused = server.client.get("/api/v2/alerts", params={"receiver": "(a)\\1"})
    assert refused.status_code == 400
    assert refused.json().startswith("receiver: ")
