"""`script`: real processes, an allowlist, no shell, a minimal environment, a timeout."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from incidents.playbooks.actions import get
from incidents.playbooks.actions.base import ActionContext, ActionError, ActionTimeout

script = get("script")
assert script is not None
PYTHON = sys.executable
ECHO = shutil.which("echo") or "/bin/echo"
SLEEP = shutil.which("sleep") or "/bin/sleep"


def params(**values: Any) -> Any:
    """Validated script parameters."""
    return script.params.model_validate(values)


@pytest.fixture
def ctx_for(make_ctx: Callable[..., ActionContext]) -> Callable[..., ActionContext]:
    """A context whose allowlist holds echo, sleep and this Python."""

    def build(timeout: float = 10.0, **playbooks: Any) -> ActionContext:
        settings = {"script_allowlist": [ECHO, SLEEP, PYTHON], **playbooks}
        return make_ctx(timeout=timeout, playbooks=settings)

    return build


def test_echo_runs_with_literal_arguments(
    ctx_for: Callable[..., ActionContext], tmp_path: Path
) -> None:
    marker = tmp_path / "X"
    p = params(command=ECHO, args=["hello", f"; touch {marker}", "$(id)", "`id`", "a|b"])
    out = script.run(p, ctx_for())
    assert out.output == f"hello ; touch {marker} $(id) `id` a|b\n"
    assert out.result == {
        "exit_code": 0,
        "stdout_bytes": len(out.output.encode()),
        "stderr_bytes": 0,
        "truncated": False,
    }
    assert not marker.exists()


def test_the_program_gets_a_minimal_environment_and_no_stdin(
    ctx_for: Callable[..., ActionContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INCIDENTS_SLACK_BOT_TOKEN", "xoxb-secret")
    code = "import os, sys; print(sorted(os.environ)); print(repr(sys.stdin.read()))"
    out = script.run(params(command=PYTHON, args=["-c", code]), ctx_for())
    names, stdin = out.output.splitlines()
    assert names == "['LANG', 'PATH']"
    assert stdin == "''"
    assert "xoxb-secret" not in out.output


def test_a_program_not_in_the_allowlist_is_refused(
    make_ctx: Callable[..., ActionContext],
) -> None:
    ctx = make_ctx(playbooks={"script_allowlist": [PYTHON]})
    with pytest.raises(ActionError) as caught:
        script.run(params(command=ECHO, args=["hi"]), ctx)
    assert f"{ECHO} is not in playbooks.script_allowlist" in caught.value.message
    assert not caught.value.retryable


def test_a_non_zero_exit_fails_with_its_code_and_stderr(
    ctx_for: Callable[..., ActionContext],
) -> None:
    code = "import sys; print('half done'); print('disk full', file=sys.stderr); sys.exit(3)"
    with pytest.raises(ActionError) as caught:
        script.run(params(command=PYTHON, args=["-c", code]), ctx_for())
    error = caught.value
    assert not error.retryable
    assert error.message == f"{PYTHON} exited with 3"
    assert error.result["exit_code"] == 3
    assert error.output == "half done\n--- stderr ---\ndisk full\n"


def test_a_timeout_kills_sleep(ctx_for: Callable[..., ActionContext]) -> None:
    started = time.monotonic()
    with pytest.raises(ActionTimeout) as caught:
        script.run(params(command=SLEEP, args=["30"]), ctx_for(timeout=0.3))
    assert time.monotonic() - started < 5
    assert caught.value.retryable
    assert "still running after 0.3 s and was killed" in caught.value.message
    assert caught.value.result["exit_code"] is None


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_timeout_kills_the_programs_children_too(
    ctx_for: Callable[..., ActionContext], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([{SLEEP!r}, '30'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(30)\n"
    )
    with pytest.raises(ActionTimeout) as caught:
        script.run(params(command=PYTHON, args=["-c", code]), ctx_for(timeout=2.5))
    assert caught.value.output == "started\n"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 3
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child)


def test_output_is_truncated_but_counted(ctx_for: Callable[..., ActionContext]) -> None:
    code = "import sys; sys.stdout.write('x' * 200000); sys.stderr.write('é' * 1000)"
    out = script.run(params(command=PYTHON, args=["-c", code]), ctx_for(max_output_bytes=256))
    assert out.result == {
        "exit_code": 0,
        "stdout_bytes": 200000,
        "stderr_bytes": 2000,
        "truncated": True,
    }
    stdout, stderr = out.output.split("\n--- stderr ---\n")
    assert stdout == "x" * 256
    assert stderr == "é" * 128


def test_parameters_and_description() -> None:
    p = params(command="/usr/local/bin/flush", args=["--all", "two words"])
    assert script.describe(p) == "run /usr/local/bin/flush --all 'two words'"
    assert not script.idempotent(p)
    assert script.idempotent(params(command="/usr/bin/true", idempotent=True))
    for values, message in [
        ({"command": "flush"}, "must be an absolute path"),
        ({"command": "/bin/echo", "args": ["a\0b"]}, r"args\[0\] contains a NUL"),
        ({"command": "/bin/echo", "args": "a b"}, "args"),
        ({"command": "/bin/echo", "shell": True}, "Extra inputs are not permitted"),
    ]:
        with pytest.raises(ValidationError, match=message):
            params(**values)


def test_a_missing_allowlisted_program_is_a_clear_error(
    make_ctx: Callable[..., ActionContext], tmp_path: Path
) -> None:
    missing = str(tmp_path / "gone")
    ctx = make_ctx(playbooks={"script_allowlist": [missing]})
    with pytest.raises(ActionError, match=f"cannot run {missing}: No such file"):
        script.run(params(command=missing), ctx)
