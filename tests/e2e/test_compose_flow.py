"""The test alert of the compose stack travels as the README says: the shipped Prometheus
rules fire, the shipped Alertmanager config posts them to our webhook with the key, the
pipeline makes one P0 incident rooted at database-postgres, and the shipped routing emails
it to the mail catcher.

Real Prometheus, Alertmanager, `incidents serve` and an SMTP server run on 127.0.0.1. The
shipped files are used as they are except for what only a container network has: host
names become 127.0.0.1 ports, and the waits (`for:`, `group_wait`, intervals, the hold
before a first page) shrink to seconds, keeping their order.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from incidents.cli import main
from tests.conftest import ROOT, require
from tests.e2e.processes import Proc, free_port, spawn, wait_for
from tests.notify.smtp_server import SmtpServer

EXAMPLES = ROOT / "examples" / "compose"
KEY = "compose-flow-key"
TIMEOUT = 60.0


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    require(names[0], f"none of {', '.join(names)} is on PATH (Debian packages)")
    raise AssertionError("unreachable: require() skips or fails")


def quick(duration: str) -> str:
    """A rule's `for:` thirty times shorter, so that the rules keep their order: 30s is 1s."""
    seconds = int(duration[:-1]) * {"s": 1, "m": 60}[duration[-1]]
    return f"{max(1, seconds // 30)}s"


def local_copies(tmp: Path, api: int, am: int, prom: int) -> None:
    """The shipped Prometheus and Alertmanager files, for 127.0.0.1 and quick."""
    config = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am}"]
    for scrape in config["scrape_configs"]:
        own = scrape["job_name"] == "prometheus"
        # Port 1: nothing listens, as nothing answers at example-db and example-app.
        scrape["static_configs"][0]["targets"] = [f"127.0.0.1:{prom if own else 1}"]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    rules = yaml.safe_load((EXAMPLES / "rules.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = quick(rule["for"])
    (tmp / "rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    text = (EXAMPLES / "alertmanager.yml").read_text(encoding="utf-8")
    text = text.replace("http://proxy:8080", f"http://127.0.0.1:{api}")
    text = text.replace("/alertmanager/incidents-api-token", str(tmp / "token"))
    text = text.replace("group_wait: 10s", "group_wait: 1s")
    (tmp / "alertmanager.yml").write_text(text, encoding="utf-8")
    (tmp / "token").write_text(KEY, encoding="utf-8")


def incidents_json(capsys: pytest.CaptureFixture[str], url: str) -> Callable[[], Any]:
    def probe() -> Any:
        capsys.readouterr()
        code = main(["incident", "list", "-o", "json", "--url", url, "--key", KEY])
        out = capsys.readouterr().out
        return json.loads(out) if code == 0 else None

    return probe


def test_the_example_alert_becomes_an_incident_and_an_email(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prometheus = binary("prometheus")
    alertmanager = binary("prometheus-alertmanager", "alertmanager")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    api_port, am_port, prom_port = free_port(), free_port(), free_port()
    local_copies(tmp_path, api_port, am_port, prom_port)
    compose_env = yaml.safe_load((ROOT / "compose.yaml").read_text())["x-incidents-env"]
    procs: list[Proc] = []
    with SmtpServer() as smtp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
        env.update({k: str(v) for k, v in compose_env.items() if k.startswith("INCIDENTS_SMTP")})
        env.update(
            INCIDENTS_CONFIG=str(EXAMPLES / "config.yaml"),
            INCIDENTS_DATABASE_URL=f"sqlite:///{tmp_path / 'incidents.db'}",
            INCIDENTS_API_TOKEN=KEY,
            INCIDENTS_SMTP_HOST=smtp.host,
            INCIDENTS_SMTP_PORT=str(smtp.port),
            INCIDENTS_LOG_JSON="false",
            # A waiting time like the others: the hold before an incident's first page.
            INCIDENTS_CORRELATION__OPEN_HOLD_SECONDS="1",
        )
        try:
            procs.append(
                spawn(
                    "incidents serve",
                    [
                        sys.executable,
                        "-m",
                        "incidents.cli",
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(api_port),
                    ],
                    tmp_path / "incidents.log",
                    env,
                )
            )

            def logs() -> str:
                return "\n".join(p.logs() for p in procs)

            url = f"http://127.0.0.1:{api_port}"
            wait_for(
                "the API",
                lambda: True if httpx.get(f"{url}/healthz").status_code == 200 else None,
                TIMEOUT,
                logs,
                tuple(procs),
            )
            # As in compose.yaml: Alertmanager starts once the API is healthy.
            procs.append(
                spawn(
                    "alertmanager",
                    [
                        alertmanager,
                        f"--config.file={tmp_path / 'alertmanager.yml'}",
                        f"--storage.path={tmp_path / 'am'}",
                        "--cluster.listen-address=",
                        f"--web.listen-address=127.0.0.1:{am_port}",
                    ],
                    tmp_path / "alertmanager.log",
                )
            )
            procs.append(
                spawn(
                    "prometheus",
                    [
                        prometheus,
                        f"--config.file={tmp_path / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    tmp_path / "prometheus.log",
                )
            )

            listed = incidents_json(capsys, url)
            found = wait_for(
                "the P0 incident rooted at database-postgres",
                lambda: (
                    [
                        i
                        for i in listed() or []
                        if i["roots"] == ["database-postgres"]
                        and i["severity"] == "P0"
                        and len(i["alert_fingerprints"]) == 3
                    ]
                    or None
                ),
                TIMEOUT,
                logs,
                tuple(procs),
            )
            assert len(found) == 1
            assert found[0]["title"].startswith("ExampleDatabaseDown on database-postgres")
            mail = wait_for(
                "the email in the mail catcher",
                lambda: (
                    [m for m in smtp.messages if "ExampleDatabaseDown" in str(m.message["Subject"])]
                    or None
                ),
                TIMEOUT,
                logs,
                tuple(procs),
            )
            assert mail[0].recipients == ["oncall@example.com"]
            assert str(mail[0].message["Subject"]).strip().startswith(f"[P0] #{found[0]['id']} ")
        finally:
            for proc in reversed(procs):
                proc.stop()
