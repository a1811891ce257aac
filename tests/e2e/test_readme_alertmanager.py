"""The README's Alertmanager receiver, as printed, against the service as `make run` starts it.

The snippet is taken from README.md and only its port is changed (to a free one); the
token and the defaults come from the Makefile, so the README, the Makefile and the
service cannot drift apart unnoticed. The real Alertmanager delivers the alert.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ROOT, alertmanager_binary, require
from tests.e2e.processes import (
    START_TIMEOUT,
    Proc,
    free_port,
    incidents_argv,
    rfc3339,
    spawn,
    unique,
    wait_for,
)

pytestmark = pytest.mark.alertmanager

SECTION = "## Pointing Alertmanager at the service"


def makefile_default(name: str) -> str:
    """The value `make run` uses for a variable when the environment does not set it."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{name} \?= (.+)$", text, re.MULTILINE)
    assert match, f"the Makefile sets no default for {name}"
    return match.group(1).strip()


def readme_snippet() -> str:
    """The first YAML block of the README section on Alertmanager."""
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```yaml\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match, f"no ```yaml block under {SECTION!r}"
    return match.group(1)


@pytest.fixture
def make_run_service(tmp_path: Path) -> Iterator[tuple[str, Proc]]:
    """`incidents serve` with the settings `make run` gives it, on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update(
        INCIDENTS_HOST="127.0.0.1",
        INCIDENTS_PORT=str(port),
        INCIDENTS_DATABASE_URL=f"sqlite:///{tmp_path / 'incidents.db'}",
        INCIDENTS_API_TOKEN=makefile_default("INCIDENTS_API_TOKEN"),
        INCIDENTS_CONFIG=str(ROOT / makefile_default("INCIDENTS_CONFIG")),
        INCIDENTS_LOG_JSON="false",
        PYTHONUNBUFFERED="1",
    )
    proc = spawn("incidents serve", incidents_argv(), tmp_path / "incidents.log", env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "GET /readyz",
            lambda: True if httpx.get(f"{base}/readyz", timeout=5).status_code == 200 else None,
            START_TIMEOUT,
            proc.logs,
            (proc,),
        )
        yield base, proc
    finally:
        proc.stop()


def test_readme_receiver_delivers_to_make_run(
    make_run_service: tuple[str, Proc], tmp_path: Path
) -> None:
    binary = alertmanager_binary()
    if binary is None:
        require("Alertmanager", "install prometheus-alertmanager")
        return
    base, service = make_run_service
    snippet = readme_snippet()
    printed = f"{makefile_default('INCIDENTS_HOST')}:{makefile_default('INCIDENTS_PORT')}"
    hook = f"http://{printed}/api/v1/alerts/alertmanager"
    receivers = yaml.safe_load(snippet)["receivers"]
    assert [c["url"] for r in receivers for c in r["webhook_configs"]] == [hook], snippet
    config = tmp_path / "alertmanager.yml"
    config.write_text(snippet.replace(f"//{printed}/", f"//{base.removeprefix('http://')}/"))

    am_port = free_port()
    storage = tmp_path / "am-data"
    storage.mkdir()
    am = spawn(
        "alertmanager",
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
    )
    token = makefile_default("INCIDENTS_API_TOKEN")
    ours = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    try:
        am_url = f"http://127.0.0.1:{am_port}"
        wait_for(
            "Alertmanager's /-/ready",
            lambda: True if httpx.get(f"{am_url}/-/ready", timeout=5).status_code == 200 else None,
            START_TIMEOUT,
            am.logs,
            (am,),
        )
        name = unique("ReadmeSnippet")
        # Started a minute ago: past the route's group_wait, so Alertmanager sends at once.
        alert = {
            "labels": {"alertname": name, "service": "api-gateway", "severity": "critical"},
            "annotations": {"summary": "from the README's receiver"},
            "startsAt": rfc3339(datetime.now(UTC) - timedelta(minutes=1)),
        }
        posted = httpx.post(f"{am_url}/api/v2/alerts", json=[alert], timeout=5)
        assert posted.status_code == 200, posted.text

        def stored() -> list[dict[str, object]] | None:
            page = ours.get("/api/v1/alerts", params={"filter": f'alertname="{name}"'})
            assert page.status_code == 200, page.text
            items: list[dict[str, object]] = page.json()["items"]
            return items or None

        items = wait_for(
            "the alert to reach the service",
            stored,
            30,
            lambda: f"{am.logs()}\n{service.logs()}",
            (am, service),
        )
        assert len(items) == 1
        assert items[0]["source"] == "alertmanager"
        assert items[0]["status"] == "firing"
    finally:
        ours.close()
        am.stop()


def test_the_compose_receiver_carries_the_compose_token() -> None:
    # examples/alertmanager.yml is mounted by compose.yaml: its token must be the one the
    # API containers get when INCIDENTS_API_TOKEN is not set.
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    setting = compose["x-incidents-env"]["INCIDENTS_API_TOKEN"]
    match = re.fullmatch(r"\$\{INCIDENTS_API_TOKEN:-(.+)\}", setting)
    assert match, setting
    receiver = yaml.safe_load((ROOT / "examples" / "alertmanager.yml").read_text())
    hooks = [c for r in receiver["receivers"] for c in r["webhook_configs"]]
    assert [c["http_config"]["authorization"]["credentials"] for c in hooks] == [match[1]]
    assert [c["url"] for c in hooks] == ["http://api:8080/api/v1/alerts/alertmanager"]
