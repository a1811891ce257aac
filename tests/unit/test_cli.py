"""The `incidents` command as a user meets it: help, --version, check-config, warnings."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from incidents import __version__
from incidents.cli import build_parser, main
from incidents.config import Settings
from incidents.config_check import unknown_environment
from tests.conftest import ROOT


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Ran]:
    """Call `main` as the console script would, from `cwd`, with only the given INCIDENTS_*."""

    def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Ran:
        for name in [n for n in os.environ if n.startswith("INCIDENTS_")]:
            monkeypatch.delenv(name)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(args)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"incidents {__version__}"


def _commands(
    parser: argparse.ArgumentParser, path: str = "incidents"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _commands(child, f"{path} {name}")
    return found


def test_every_command_and_option_has_help_with_its_default() -> None:
    commands = _commands(build_parser())
    names = {path for path, _ in commands}
    assert {"incidents serve", "incidents db", "incidents check-config"} <= names
    assert "incidents routing test" in names
    for path, parser in commands:
        text = " ".join(parser.format_help().split())
        assert parser.description, f"`{path} --help` does not say what it does"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            shown = parser._get_formatter()._expand_help(action) if action.help else ""
            assert shown, f"{path}: {action.dest} has no help text"
            assert "default" in shown or "required" in shown, f"{path}: {shown!r}"
            assert " ".join(shown.split()) in text


def test_help_shows_the_settings_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: INCIDENTS_PORT, else 8080)" in out
    assert "(default: INCIDENTS_HOST, else 127.0.0.1)" in out
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    assert "(default: 2)" in capsys.readouterr().out


SECRET_CONFIG = """\
database_url: postgresql://incidents:hunter2-db@db.example:5432/incidents
broker_url: redis://:hunter2-broker@redis.example:6379/0
api_token: hunter2-token
correlation:
  graph_file: graph.yaml
"""


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A config folder holding the file and its graph, and an unrelated working directory."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(SECRET_CONFIG)
    shutil.copy(ROOT / "examples" / "services.yaml", conf / "graph.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return conf, elsewhere


def test_check_config_takes_a_file_masks_secrets_and_resolves_paths_beside_it(
    layout: tuple[Path, Path], run_cli: Callable[..., Ran]
) -> None:
    conf, elsewhere = layout
    # A relative FILE, from a working directory that holds no graph.yaml.
    result = run_cli(["check-config", "../conf/config.yaml"], cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["database_url"] == "postgresql://incidents:***@db.example:5432/incidents"
    assert shown["broker_url"] == "redis://:***@redis.example:6379/0"
    assert shown["api_token"] == "***"
    assert Path(shown["correlation"]["graph_file"]) == (conf / "graph.yaml").resolve()
    assert "authentication is on" in result.stderr
    assert "the configuration is valid" in result.stderr


def test_check_config_falls_back_to_incidents_config_and_reports_keys_only(
    layout: tuple[Path, Path], run_cli: Callable[..., Ran]
) -> None:
    conf, elsewhere = layout
    (conf / "open.yaml").write_text("correlation:\n  graph_file: graph.yaml\n")
    result = run_cli(["check-config"], cwd=elsewhere, env={"INCIDENTS_CONFIG": "../conf/open.yaml"})
    assert result.returncode == 0, result.stderr
    assert Path(json.loads(result.stdout)["correlation"]["graph_file"]) == conf / "graph.yaml"
    assert "authentication is on: API keys only" in result.stderr


def test_paths_from_the_environment_stay_relative_to_the_working_directory(
    layout: tuple[Path, Path], run_cli: Callable[..., Ran]
) -> None:
    conf, elsewhere = layout
    shutil.copy(conf / "graph.yaml", elsewhere / "local.yaml")
    result = run_cli(
        ["check-config", str(conf / "config.yaml")],
        cwd=elsewhere,
        env={"INCIDENTS_CORRELATION__GRAPH_FILE": "local.yaml"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["correlation"]["graph_file"] == "local.yaml"


def test_check_config_on_a_bad_file_names_file_and_line(
    layout: tuple[Path, Path], run_cli: Callable[..., Ran]
) -> None:
    conf, elsewhere = layout
    bad = conf / "bad.yaml"
    bad.write_text("log_level: INFO\ncorrelation:\n  graph_file: missing.yaml\n")
    result = run_cli(["check-config", str(bad)], cwd=elsewhere)
    assert result.returncode == 2
    assert f"{bad}:3: correlation.graph_file" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli(["check-config", str(conf / "nope.yaml")], cwd=elsewhere)
    assert result.returncode == 2
    assert "nope.yaml: cannot read config file" in result.stderr


def test_unknown_environment_variables_are_warned_about_with_the_closest_name(
    layout: tuple[Path, Path], run_cli: Callable[..., Ran]
) -> None:
    conf, elsewhere = layout
    env = {
        "INCIDENTS_INGEST__MAX_BODY_BYTE": "1000",
        "INCIDENTS_DATABSE_URL": "sqlite:///x.db",
        "INCIDENTS_CORRELATION__HOPS": "3",
    }
    result = run_cli(["check-config", str(conf / "config.yaml")], cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert (
        "incidents: WARNING: unknown setting INCIDENTS_INGEST__MAX_BODY_BYTE in the environment "
        "is ignored; did you mean INCIDENTS_INGEST__MAX_BODY_BYTES?"
    ) in lines
    assert any(
        "INCIDENTS_DATABSE_URL" in line and "INCIDENTS_DATABASE_URL?" in line for line in lines
    )
    assert not any("INCIDENTS_CORRELATION__HOPS" in line for line in lines)
    shown = json.loads(result.stdout)
    assert shown["correlation"]["hops"] == 3
    assert shown["ingest"]["max_body_bytes"] == Settings().ingest.max_body_bytes


def _env_names(settings: BaseModel, prefix: str) -> list[str]:
    names = []
    for key in type(settings).model_fields:
        value = getattr(settings, key)
        names.append(f"{prefix}{key.upper()}")
        if isinstance(value, BaseModel):
            names += _env_names(value, f"{prefix}{key.upper()}__")
    return names


def test_every_setting_of_every_section_is_a_known_name() -> None:
    # Every field of every section, as they are now and as they will be: no list to update.
    names = _env_names(Settings(), "INCIDENTS_")
    assert "INCIDENTS_INGEST__MAX_BODY_BYTES" in names
    assert "INCIDENTS_PIPELINE__MAX_JOBS_PER_RUN" in names
    environ = dict.fromkeys(names, "x")
    environ["INCIDENTS_INGEST__SEVERITY_MAP__DISASTER"] = "P0"  # a key of a mapping setting
    environ["PATH"] = "/usr/bin"
    assert unknown_environment(environ) == []
    assert unknown_environment({"INCIDENTS_FOO": "1"}) == [
        "unknown setting INCIDENTS_FOO in the environment is ignored"
    ]
