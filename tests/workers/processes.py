"""Real processes for the worker tests: a private Redis, `incidents` commands, waiting."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, require


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until `predicate` holds; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class PrivateRedis:
    """A redis-server of the test's own, which the test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            require("redis-server", "the binary is not installed")
        self.binary = str(binary)
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again) on the same port."""
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: port_open(self.port), 10, "redis-server to listen")

    def kill(self) -> None:
        """Stop it at once, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        wait_for(lambda: not port_open(self.port), 5, "redis-server to stop")


class Command:
    """An `incidents` process (or `python -m` module) with its output in a log file."""

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=cwd or ROOT,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        """What it has logged so far."""
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def kill_group(self) -> None:
        """SIGKILL the process and every process it started (a machine losing it)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def kill_child(self) -> int:
        """SIGKILL the process its supervisor runs (the Celery worker itself, which has a
        session of its own); return its pid. The supervisor starts it again."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        [pid] = [int(p) for p in children.split()]
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        """Ask it to stop, then kill what is left."""
        if self.alive():
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def service_env(db_url: str, broker_url: str, **pipeline: float) -> dict[str, str]:
    """The environment of an API, worker or beat process for a test."""
    env = {
        "INCIDENTS_DATABASE_URL": db_url,
        "INCIDENTS_BROKER_URL": broker_url,
        "INCIDENTS_API_TOKEN": "test-token",
        "INCIDENTS_CONFIG": "",
        "INCIDENTS_LOG_JSON": "false",
    }
    for name, value in pipeline.items():
        env[f"INCIDENTS_PIPELINE__{name.upper()}"] = str(value)
    return env
