"""Settings from the environment and a YAML file; bad values fail naming file, line, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidents.config import load_settings
from incidents.exceptions import ConfigError
from incidents.ingest.classify import classify


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("INCIDENTS_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.host == "127.0.0.1" and settings.port == 8080
    assert settings.embedded_worker
    assert settings.database_url.startswith("sqlite:///")
    assert settings.ingest.max_body_bytes == 64 * 1024 * 1024
    # No `routing:` section: one console receiver takes everything.
    assert settings.routing.route.receiver == "console"
    assert [r.name for r in settings.routing.receivers] == ["console"]


def test_environment_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "port: 9000\ningest:\n  severity_map: {disaster: P0}\n  default_severity: P2\n"
    )
    monkeypatch.setenv("INCIDENTS_CONFIG", str(config))
    monkeypatch.setenv("INCIDENTS_PORT", "9100")  # the environment wins over the file
    monkeypatch.setenv("INCIDENTS_DATABASE_URL", "postgresql://u@db:5432/x")
    monkeypatch.setenv("INCIDENTS_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("INCIDENTS_API_TOKEN", "s3cret")
    monkeypatch.setenv("INCIDENTS_INGEST__MAX_BODY_BYTES", "1000")
    settings = load_settings()
    assert settings.port == 9100
    assert settings.api_token == "s3cret"
    assert not settings.embedded_worker
    assert settings.ingest.max_body_bytes == 1000
    assert settings.ingest.severity_map == {"disaster": "P0"}
    assert classify({"severity": "disaster", "app": "web"}, settings.ingest) == ("P0", "web")
    assert classify({"severity": "unknown"}, settings.ingest) == ("P2", None)


def test_bad_yaml_value_names_file_line_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("log_level: INFO\ningest:\n  severity_map:\n    critical: P7\n")
    monkeypatch.setenv("INCIDENTS_CONFIG", str(config))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert f"{config}:4" in err.value.message
    assert "ingest.severity_map" in err.value.message


def test_unknown_key_and_yaml_syntax(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("ingest:\n  max_body_bytez: 10\n")
    monkeypatch.setenv("INCIDENTS_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"c.yaml:2: ingest.max_body_bytez"):
        load_settings()
    config.write_text("port: [1,\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: invalid YAML"):
        load_settings()
    monkeypatch.setenv("INCIDENTS_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings()


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENTS_PORT", "eighty")
    with pytest.raises(ConfigError, match="INCIDENTS_PORT"):
        load_settings()
    monkeypatch.setenv("INCIDENTS_PORT", "8080")
    monkeypatch.setenv("INCIDENTS_DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigError, match="database_url"):
        load_settings()


def test_severity_defaults() -> None:
    ingest = load_settings().ingest
    assert classify({"severity": "critical"}, ingest)[0] == "P0"
    assert classify({"severity": "high"}, ingest)[0] == "P1"
    assert classify({"severity": "error"}, ingest)[0] == "P1"
    assert classify({"severity": "warning"}, ingest)[0] == "P2"
    assert classify({"severity": "info"}, ingest)[0] == "P3"
    assert classify({"severity": "whatever"}, ingest)[0] == "P3"
    assert classify({"severity": "p1"}, ingest)[0] == "P1"
    assert classify({}, ingest)[0] == "P3"
    labels = {"job": "node", "component": "disk", "app": "web"}
    assert classify(labels, ingest)[1] == "web"  # service, app, job, component in that order


def test_cli_refuses_a_bad_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from incidents.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("port: 99999\n")
    monkeypatch.setenv("INCIDENTS_CONFIG", str(config))
    assert main(["check-config"]) == 2


def test_relative_paths_in_the_file_are_taken_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from tests.conftest import ROOT

    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(ROOT / "examples" / "services.yaml", conf / "graph.yaml")
    (conf / "config.yaml").write_text(
        "database_url: sqlite:///data/incidents.db\ncorrelation:\n  graph_file: graph.yaml\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings("../conf/config.yaml")
    assert settings.correlation.graph_file == str(conf.resolve() / "graph.yaml")
    assert settings.database_url == f"sqlite:///{conf.resolve() / 'data' / 'incidents.db'}"

    # Absolute paths and server URLs are left as written.
    absolute = conf / "absolute.yaml"
    absolute.write_text(
        "database_url: postgresql://u@db:5432/x\n"
        f"correlation:\n  graph_file: {conf / 'graph.yaml'}\n"
    )
    settings = load_settings(str(absolute))
    assert settings.correlation.graph_file == str(conf / "graph.yaml")
    assert settings.database_url == "postgresql://u@db:5432/x"


def test_the_example_config_loads_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import ROOT

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INCIDENTS_CONFIG", str(ROOT / "examples" / "config.yaml"))
    settings = load_settings()
    graph = Path(settings.correlation.graph_file)
    assert graph.is_file() and graph.samefile(ROOT / "examples" / "services.yaml")
    assert {r.name for r in settings.routing.receivers} >= {"critical", "digest", "security"}
