"""Fixtures for the playbook engine: a playbook folder, the service with it, and waiting."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.incident_pipe import Pipeline
from tests.conftest import AUTH

FINISHED = {"succeeded", "failed", "interrupted", "cancelled", "rejected", "expired"}


def write_playbooks(folder: Path, **files: str) -> Path:
    """Write playbook files (name -> YAML text) into the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return folder


def runs_of(client: TestClient, incident_id: int) -> list[dict[str, Any]]:
    """The incident's playbook runs, through the API."""
    response = client.get(f"/api/v1/incidents/{incident_id}/playbook-runs", headers=AUTH)
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()
    return runs


def wait_run(
    client: TestClient,
    run_id: int,
    until: Callable[[dict[str, Any]], bool] = lambda r: r["status"] in FINISHED,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Poll a run until the condition holds; fail with the run as last seen."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/playbook-runs/{run_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        run = response.json()
        if until(run):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not get there in {timeout}s: {run}")


def wait_runs(
    client: TestClient, incident_id: int, count: int = 1, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Wait until the incident has `count` runs."""
    deadline = time.monotonic() + timeout
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = runs_of(client, incident_id)
        if len(runs) >= count:
            return runs
        time.sleep(0.05)
    raise AssertionError(f"incident {incident_id} has {len(runs)} runs, not {count}")


@pytest.fixture
def playbook_pipe(
    db_url: str, client_for: Callable[..., TestClient], tmp_path: Path
) -> Iterator[Callable[..., Pipeline]]:
    """Start the service with a playbook folder built from the given files."""
    made: list[Pipeline] = []

    def start(settings: dict[str, Any] | None = None, **files: str) -> Pipeline:
        folder = write_playbooks(tmp_path / "playbooks", **files)
        overrides = dict(settings or {})
        playbooks = {"folder": str(folder), "sweep_interval_seconds": 0.5}
        playbooks.update(overrides.pop("playbooks", {}))
        client = client_for(
            db_url,
            playbooks=playbooks,
            correlation={"open_hold_seconds": 0, **overrides.pop("correlation", {})},
            **overrides,
        )
        pipe = Pipeline(client, db_url)
        pipe.load_graph()
        made.append(pipe)
        return pipe

    yield start
    for pipe in made:
        pipe.close()
