"""The client commands as a person runs them: a real process, its output and exit code;
and where the URL and key come from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from incidents.client.connection import DEFAULT_URL, UsageError, resolve
from tests.api.live import free_port
from tests.cli.conftest import Service
from tests.conftest import ROOT, TOKEN


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    environ["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "incidents.cli", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_console_session(service: Service, tmp_path: Path) -> None:
    fingerprint = service.post_alert("CliConsole", "cli-console")
    number = service.incident_of(fingerprint)["id"]
    env = {"INCIDENTS_URL": service.url, "INCIDENTS_KEY": TOKEN}

    listed = run(["incident", "list", "--service", "cli-console"], tmp_path, **env)
    assert listed.returncode == 0, listed.stderr
    assert str(number) in listed.stdout
    assert "CliConsole on cli-console" in listed.stdout

    wrong = run(["incident", "list"], tmp_path, INCIDENTS_URL=service.url, INCIDENTS_KEY="nope")
    assert wrong.returncode == 1
    assert wrong.stderr == "incidents: invalid credentials (HTTP 401)\n"
    assert "Traceback" not in wrong.stderr and wrong.stdout == ""

    port = free_port()  # nobody listens there
    away = run(["oncall", "--url", f"http://127.0.0.1:{port}"], tmp_path)
    assert away.returncode == 1
    assert away.stderr == f"incidents: cannot reach http://127.0.0.1:{port}: connection refused\n"

    usage = run(["silence", "add", "alertname=X"], tmp_path, **env)
    assert usage.returncode == 2 and "--comment" in usage.stderr


def test_config_file_gives_url_and_key(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "client.yaml"
    path.write_text(f"url: {service.url}/\nkey: {TOKEN}\n", encoding="utf-8")
    shown = run(["oncall", "--client-config", str(path)], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "alice" in shown.stdout
    # The default file, under XDG_CONFIG_HOME.
    default = tmp_path / "xdg" / "incidents" / "client.yaml"
    default.parent.mkdir(parents=True)
    default.write_text(f"url: {service.url}\nkey: wrong\n", encoding="utf-8")
    refused = run(["oncall"], tmp_path)
    assert refused.returncode == 1 and "(HTTP 401)" in refused.stderr
    # A flag wins over the file.
    assert run(["oncall", "--key", TOKEN], tmp_path).returncode == 0


def test_resolution_order(tmp_path: Path) -> None:
    path = tmp_path / "client.yaml"
    path.write_text("url: http://from-file:1\nkey: file-key\n", encoding="utf-8")
    env = {"INCIDENTS_URL": "http://from-env:2", "INCIDENTS_KEY": "env-key"}
    assert resolve("http://flag:3/", "flag-key", str(path), env) == (
        resolve("http://flag:3", "flag-key", None, {})
    )
    both = resolve(None, None, str(path), env)
    assert (both.url, both.key) == ("http://from-env:2", "env-key")
    from_file = resolve(None, None, str(path), {})
    assert (from_file.url, from_file.key) == ("http://from-file:1", "file-key")
    nothing = resolve(None, None, None, {"XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert (nothing.url, nothing.key) == (DEFAULT_URL, "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("url: a: b\n", "client.yaml:1: not valid YAML: mapping values are not allowed"),
        ("- a list\n", "expected a mapping"),
        ("url: http://x\ntoken: k\n", "unknown key 'token'"),
        ("url: ftp://x\n", "expected an http:// or https:// URL"),
        ("key: 12\n", "key: expected a string"),
    ],
)
def test_bad_config_files_are_usage_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "client.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        resolve(None, None, str(path), {})
    assert problem in str(caught.value)


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    outcome = run(["incident", "list", "--client-config", str(tmp_path / "absent.yaml")], tmp_path)
    assert outcome.returncode == 2
    assert outcome.stderr == f"incidents: {tmp_path / 'absent.yaml'}: no such file\n"
