"""The graph file at start-up, `incidents graph load|show`, and replicas starting together."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from incidents.api.app import create_app
from incidents.cli import main
from incidents.config import load_settings
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import Replacement, apply_graph_file
from incidents.db import session_scope
from incidents.exceptions import ConfigError
from tests.api.test_graph_replace import pg_sessions, wait_for_lock_wait
from tests.conftest import AUTH, make_settings

GRAPH = "/api/v1/services/graph"
V1 = "services:\n  - {name: a, depends_on: [b]}\n  - {name: b}\n"
V2 = "services:\n  - {name: a, team: web}\n  - {name: c}\n"
API = "services:\n  - {name: from-api}\n"


@contextmanager
def started(db_url: str, graph_file: Path) -> Iterator[TestClient]:
    """The app from start-up to shutdown, as one process of a deployment."""
    settings = make_settings(db_url, correlation={"graph_file": str(graph_file)})
    with TestClient(create_app(settings)) as client:
        yield client


def names(client: TestClient) -> list[str]:
    return [s["name"] for s in client.get(GRAPH, headers=AUTH).json()["services"]]


def replaced(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.getMessage().startswith("service graph replaced")]


def test_a_changed_graph_file_is_applied_at_start_and_logged(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="incidents.correlation.store")
    path = tmp_path / "services.yaml"
    path.write_text(V1)
    with started(db_url, path) as client:
        assert names(client) == ["a", "b"]
    path.write_text(V2)
    with started(db_url, path) as client:
        assert names(client) == ["a", "c"]
    records = replaced(caplog)
    assert len(records) == 2
    last = records[-1]
    assert (last.via, last.by, last.graph_file) == ("file", f"file:{path}", str(path))
    assert (last.added_names, last.removed_names, last.changed_names) == (["c"], ["b"], ["a"])
    assert "added 1 (c), removed 1 (b), changed 1 (a)" in last.getMessage()


def test_an_unchanged_file_keeps_a_graph_replaced_through_the_api(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(V1)
    with started(db_url, path) as client:
        assert client.put(GRAPH, content=API.encode(), headers=AUTH).status_code == 200
    # Reformatting and comments do not change the graph the file describes.
    path.write_text("# edited\n" + V1.replace("{name: b}", "{ name: b }"))
    caplog.set_level(logging.INFO, logger="incidents.correlation.store")
    with started(db_url, path) as client:
        assert names(client) == ["from-api"]
    assert replaced(caplog) == []

    # A real edit of the file wins over the API's graph at the next start.
    path.write_text(V2)
    with started(db_url, path) as client:
        assert names(client) == ["a", "c"]
    assert len(replaced(caplog)) == 1


def test_a_graph_replaced_before_file_digests_were_kept_is_not_overwritten(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(V1)
    with started(db_url, path) as client:
        assert client.put(GRAPH, content=API.encode(), headers=AUTH).status_code == 200
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE service_graph SET file_digest = NULL, updated_by = 'api'"))
    engine.dispose()
    caplog.set_level(logging.INFO, logger="incidents.correlation.store")
    with started(db_url, path) as client:
        assert names(client) == ["from-api"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("graph load" in r.getMessage() for r in warnings)
    path.write_text(V2)
    with started(db_url, path) as client:
        assert names(client) == ["a", "c"]


def test_replicas_starting_together_apply_the_file_once(pg_url: str, tmp_path: Path) -> None:
    """The second replica read the old state while the first had not committed yet."""
    path = tmp_path / "services.yaml"
    path.write_text(V1)
    with pg_sessions(pg_url) as sessions:
        with session_scope(sessions) as session:
            assert apply_graph_file(session, str(path)) is not None
        path.write_text(V2)
        outcome: list[Replacement | None] = []

        def second_replica() -> None:
            with session_scope(sessions) as session:
                outcome.append(apply_graph_file(session, str(path)))

        first = sessions()
        try:
            applied = apply_graph_file(first, str(path))
            assert applied is not None and applied.changes["added"]["names"] == ["c"]
            thread = threading.Thread(target=second_replica)
            thread.start()
            wait_for_lock_wait(sessions)
            first.commit()
        finally:
            first.close()
        thread.join(timeout=30)
        assert outcome == [None]


# -- the command line --------------------------------------------------------------------------


def run_cli(monkeypatch: pytest.MonkeyPatch, db_url: str, *argv: str) -> int:
    monkeypatch.setenv("INCIDENTS_DATABASE_URL", db_url)
    return main(list(argv))


def test_graph_load_stores_and_summarises_and_show_prints_it(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(V1)
    assert run_cli(monkeypatch, db_url, "graph", "load", str(path)) == 0
    path.write_text(V2)
    assert run_cli(monkeypatch, db_url, "graph", "load", str(path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        f"service graph loaded from {path}: 2 services, added 1 (c), removed 1 (b), changed 1 (a)"
    )

    assert run_cli(monkeypatch, db_url, "graph", "show") == 0
    shown = capsys.readouterr().out
    assert ServiceGraph.from_yaml(shown) == ServiceGraph.from_yaml(V2)
    assert yaml.safe_load(shown)["services"][0]["team"] == "web"
    assert run_cli(monkeypatch, db_url, "graph", "show", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == ServiceGraph.from_yaml(V2).to_document()


def test_graph_load_of_a_bad_file_names_file_and_line(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("services:\n  - name: a\n    depends_on: [ghost]\n  - name: b\n    owner: x\n")
    assert run_cli(monkeypatch, sqlite_url, "graph", "load", str(path)) == 1
    err = capsys.readouterr().err
    assert f"{path}:3: services[0].depends_on[0]: service 'a' depends on unknown" in err
    assert f"{path}:5: services[1].owner: service 'b' has unknown key 'owner'" in err

    path.write_text("services:\n  - name: a\n    depends_on: [b\n")
    assert run_cli(monkeypatch, sqlite_url, "graph", "load", str(path)) == 1
    assert f"incidents: {path}:4:1: " in capsys.readouterr().err

    path.write_text("services: []\n")
    assert run_cli(monkeypatch, sqlite_url, "graph", "load", str(path)) == 1
    assert "--allow-empty" in capsys.readouterr().err
    assert run_cli(monkeypatch, sqlite_url, "graph", "load", "--allow-empty", str(path)) == 0
    assert run_cli(monkeypatch, sqlite_url, "graph", "load", str(tmp_path / "missing.yaml")) == 2


def test_a_graph_file_with_no_services_fails_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text("services: []\n")
    with pytest.raises(ConfigError, match="lists no services"):
        load_settings(correlation={"graph_file": str(path)})


def test_graph_commands_on_a_database_without_tables_say_how_to_create_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    path = tmp_path / "services.yaml"
    path.write_text(V1)
    for command in (["graph", "show"], ["graph", "load", str(path)]):
        assert run_cli(monkeypatch, url, *command) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "has no tables yet; create them with: incidents db upgrade" in err
