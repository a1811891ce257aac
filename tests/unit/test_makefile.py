"""The Makefile's installs: `make run` takes only what running needs, test and lint add dev.

The real Makefile runs under the real `make`, in a copy of the project whose .venv holds
stand-in `pip`, `incidents` and `pytest` scripts that only record how they were called.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$(dirname "$0")/../calls.log"\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # Older than any stamp the targets write, whatever the clock's resolution.
    os.utime(tmp_path / "pyproject.toml", (1_000_000_000, 1_000_000_000))
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "pip", "incidents", "pytest", "ruff", "mypy"):
        script = bin_dir / name
        script.write_text(RECORDER)
        script.chmod(0o755)
    return tmp_path


def make(project: Path, target: str) -> list[str]:
    """Run a target; return the stand-ins' calls it made."""
    log = project / ".venv" / "calls.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INCIDENTS_", "MAKE"))}
    result = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return log.read_text().splitlines()


def installs(calls: list[str]) -> list[str]:
    return [call for call in calls if call.startswith("pip install")]


def test_make_run_installs_without_dev_tools_and_test_adds_them(project: Path) -> None:
    first = make(project, "run")
    assert installs(first) == ["pip install --quiet -e ."]
    assert "incidents serve" in first
    assert installs(make(project, "run")) == []

    tested = make(project, "test")
    assert installs(tested) == ["pip install --quiet -e .[dev]"]
    assert "pytest " in tested
    assert installs(make(project, "run")) == []
    assert installs(make(project, "lint")) == []


def test_make_run_after_make_test_installs_nothing(project: Path) -> None:
    assert installs(make(project, "test")) == ["pip install --quiet -e .[dev]"]
    assert installs(make(project, "run")) == []


def test_a_changed_pyproject_reinstalls(project: Path) -> None:
    make(project, "test")
    # A plain touch can land in the same clock tick as the stamp make just wrote.
    newer = (project / ".venv" / ".installed-dev").stat().st_mtime + 2
    os.utime(project / "pyproject.toml", (newer, newer))
    assert installs(make(project, "run")) == ["pip install --quiet -e ."]
    assert installs(make(project, "test")) == ["pip install --quiet -e .[dev]"]
