"""`incidents routing test` and `incidents check-config` on the routing section."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from incidents.cli import main
from incidents.notify.routing import parse_label_args
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "config.yaml"
RECEIVERS = """\
routing:
  receivers:
    - name: a
      console: [stdout]
    - name: b
      sms: ["+15005550006"]
"""


def test_check_config_reports_routing_errors_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(RECEIVERS + "  route:\n    receiver: a\n    routes:\n      - receiver: z\n")
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}:10: routing.route.routes.0.receiver: undefined receiver 'z'" in err
    assert main(["check-config", str(EXAMPLE)]) == 0
    shown = capsys.readouterr().out
    assert '"continue": true' in shown and '"digest": "daily"' in shown


def test_check_config_reports_a_receivers_broken_template_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        RECEIVERS
        + "      templates:\n"
        + "        sms:\n"
        + "          text: '{{ severity }} #{{ incident_id }}'\n"
        + "          resolved: '{% if title %}{{ title }'\n"
        + "  route:\n    receiver: a\n"
    )
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}:10: routing.receivers.1.templates.sms.resolved: " in err
    assert "sms resolved template does not compile" in err


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_routing_test_prints_the_receivers(capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(EXAMPLE)]
    cases: list[tuple[list[str], str]] = [
        (["severity=P0", "service=api-gateway"], "critical\n"),
        (["severity=P1"], "high\n"),
        (["severity=P2", "team=security"], "security\nwarning\n"),
        (["severity=P3", "category=security"], "security\ndigest\n"),
        ([], "console\n"),
    ]
    for labels, expected in cases:
        assert _run(["routing", "test", *labels, *config], capsys) == (0, expected, "")
    code, out, _ = _run(["routing", "test", "severity=P0", "team=security", "--verbose"], capsys)
    assert code == 0 and out.startswith("console\n")  # no --config: the default tree
    code, out, _ = _run(["routing", "test", "severity=P0", *config, "--verbose"], capsys)
    assert code == 0
    assert out.splitlines() == [
        "critical",
        '  route: route.routes[2]  {severity="P0"}',
        "  group_wait: the opening hold  group_interval: -  repeat_interval: 4h",
        "  slack: #incidents-critical",
        "  email: oncall@example.com",
        "  sms: +15005550006",
    ]


@pytest.mark.parametrize(
    ("arg", "reason"),
    [
        ("severity", "write name=value"),
        ('severity=~"P0"', "not a matcher"),
        ("severity!=P0", "not a matcher"),
    ],
)
def test_routing_test_refuses_a_bad_label(
    arg: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["routing", "test", arg, "--config", str(EXAMPLE)], capsys)
    assert code == 2 and out == ""
    assert f"incidents: bad label {arg!r}" in err and reason in err


def test_label_arguments() -> None:
    assert parse_label_args(["a=1", 'b="x y"', "a=1"]) == {"a": "1", "b": "x y"}
    with pytest.raises(ValueError, match="given twice"):
        parse_label_args(["a=1", "a=2"])


def test_the_console_script_runs_routing_test(tmp_path: Path) -> None:
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env["INCIDENTS_CONFIG"] = str(EXAMPLE)
    env["PYTHONPATH"] = str(ROOT)
    ran = subprocess.run(
        [sys.executable, "-m", "incidents.cli", "routing", "test", "severity=P0", "team=security"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "security\ncritical\n"
    ran = subprocess.run(
        [sys.executable, "-m", "incidents.cli", "routing", "test", "severity"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 2 and "bad label 'severity'" in ran.stderr
