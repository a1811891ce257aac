"""`script`: run one allowlisted program with literal arguments, never through a shell.

The program gets no stdin and a minimal environment (no secret of the service leaks into
it), and runs in a session of its own so that a timeout kills it and every process it
started. Only the first `max_output_bytes` of stdout and of stderr are kept; the rest is
read and counted, so the program never blocks on a full pipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import IO, Any, ClassVar

from pydantic import Field, field_validator

from . import register
from .base import ActionContext, ActionError, ActionResult, ActionTimeout, Params

# The whole environment the program sees.
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV = {"PATH": _PATH, "LANG": "C.UTF-8"}
# How long descendants that still hold the program's output may outlive it.
_LEFTOVER_GRACE_SECONDS = 2.0
_CHUNK = 64 * 1024


class ScriptParams(Params):
    """The program (an entry of `playbooks.script_allowlist`) and its arguments."""

    command: str
    args: list[str] = Field(default_factory=list)
    idempotent: bool = False

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError(f"command must be an absolute path (got {value!r})")
        if "\0" in value:
            raise ValueError("command contains a NUL character")
        return value

    @field_validator("args")
    @classmethod
    def _check_args(cls, value: list[str]) -> list[str]:
        for index, arg in enumerate(value):
            if "\0" in arg:
                raise ValueError(f"args[{index}] contains a NUL character")
        return value


class _Capture:
    """Drains one pipe in a thread, keeping its first `limit` bytes and counting the rest."""

    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        self.kept = bytearray()
        self.size = 0
        self._pipe = pipe
        self._limit = limit
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        with self._pipe:
            while chunk := self._pipe.read1(_CHUNK):  # type: ignore[attr-defined]
                self.size += len(chunk)
                room = self._limit - len(self.kept)
                if room > 0:
                    self.kept += chunk[:room]

    @property
    def truncated(self) -> bool:
        """Whether the program wrote more than was kept."""
        return self.size > len(self.kept)

    def text(self) -> str:
        """What was kept, as text (a character cut in half at the end is dropped)."""
        errors = "ignore" if self.truncated else "replace"
        return bytes(self.kept).decode("utf-8", errors=errors)


class Script:
    """Run an allowlisted program; a non-zero exit fails the step."""

    name: ClassVar[str] = "script"
    params: ClassVar[type[Params]] = ScriptParams

    def idempotent(self, params: ScriptParams) -> bool:
        """Only the playbook's author knows: their `idempotent` (default False)."""
        return params.idempotent

    def describe(self, params: ScriptParams) -> str:
        """E.g. "run /usr/local/bin/flush-cache --all"."""
        return " ".join(["run", params.command, *(_quoted(a) for a in params.args)])

    def run(self, params: ScriptParams, ctx: ActionContext) -> ActionResult:
        """Run the program to its end or its timeout, capturing the start of its output."""
        settings = ctx.settings.playbooks
        if params.command not in settings.script_allowlist:
            raise ActionError(
                f"{params.command} is not in playbooks.script_allowlist; add it there to let "
                "playbooks run it"
            )
        limit = settings.max_output_bytes
        try:
            # A list argv and no shell: arguments reach the program literally.
            process = subprocess.Popen(
                [params.command, *params.args],
                shell=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(_ENV),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ActionError(f"cannot run {params.command}: {exc.strerror or exc}") from None
        assert process.stdout is not None and process.stderr is not None
        out = _Capture(process.stdout, limit)
        err = _Capture(process.stderr, limit)
        deadline = time.monotonic() + ctx.timeout
        try:
            code = process.wait(timeout=ctx.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            _join(out, err, time.monotonic() + _LEFTOVER_GRACE_SECONDS)
            timeout = ActionTimeout(
                f"{params.command} was still running after {ctx.timeout:g} s and was killed",
                result=_result(None, out, err),
            )
            timeout.output = _output(out, err)
            raise timeout from None
        if not _join(out, err, min(deadline, time.monotonic() + _LEFTOVER_GRACE_SECONDS)):
            # It exited, but processes it started still hold its stdout or stderr open.
            _kill_group(process)
            _join(out, err, time.monotonic() + _LEFTOVER_GRACE_SECONDS)
        result = _result(code, out, err)
        output = _output(out, err)
        if code != 0:
            why = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
            raise ActionError(f"{params.command} {why}", result=result, output=output)
        return ActionResult(result=result, output=output)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the program's whole process group (its session, see start_new_session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _join(out: _Capture, err: _Capture, deadline: float) -> bool:
    """Wait for both pipes to reach their end before the monotonic deadline."""
    for capture in (out, err):
        capture.thread.join(max(0.0, deadline - time.monotonic()))
    return not (out.thread.is_alive() or err.thread.is_alive())


def _result(code: int | None, out: _Capture, err: _Capture) -> dict[str, Any]:
    """The step's structured result."""
    return {
        "exit_code": code,
        "stdout_bytes": out.size,
        "stderr_bytes": err.size,
        "truncated": out.truncated or err.truncated,
    }


def _output(out: _Capture, err: _Capture) -> str:
    """Stdout, then stderr under a marker when there is any."""
    text = out.text()
    if err.size:
        text += ("" if not text or text.endswith("\n") else "\n") + "--- stderr ---\n" + err.text()
    return text


def _quoted(arg: str) -> str:
    """An argument as a reader can tell where it starts and ends."""
    return arg if arg and not any(c.isspace() or c in "'\"\\" for c in arg) else repr(arg)


register(Script())
