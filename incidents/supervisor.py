"""Keep a Celery worker (or beat) process running: start it again when it exits.

Why: with Celery 5.7 and kombu 5.7 (the latest releases), a worker that loses Redis while
it holds unacknowledged messages can exit with `Unrecoverable error: AttributeError(
"'NoneType' object has no attribute 'hostname'")`. The consumer's connection-loss
handler first collects the connection (which detaches the transport) and then closes it;
the second close restores the unacknowledged messages through a channel whose transport
is gone, and the AttributeError escapes the handler's `ignore_errors`. No release fixes
it yet. Whatever stops the process, jobs are safe in the outbox; this loop makes the
worker resume by itself, with a backoff so that a worker that cannot start does not spin.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from incidents.tasks import WORKER_MODULE

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If the supervisor itself is killed, its child must not run on unsupervised.
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Runs one command and restarts it after it exits, until told to stop."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str = "worker",
        first_backoff: float = 1.0,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self.command = list(command)
        self.name = name
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.restarts = 0
        self._stopping = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop restarting and pass the signal to the running child."""
        self._stopping.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    def run(self) -> int:
        """Run the command until stopped; return the last child's exit status."""
        backoff = self.first_backoff
        while True:
            started = time.monotonic()
            # Its own session: a terminal's Ctrl-C reaches it once, through stop().
            self._child = subprocess.Popen(
                self.command, start_new_session=True, preexec_fn=_die_with_parent
            )
            if self._stopping.is_set():  # a signal came while it was starting
                self._child.terminate()
            code = self._child.wait()
            if self._stopping.is_set():
                return code
            if time.monotonic() - started >= self.healthy_after:
                backoff = self.first_backoff
            log.error(
                "the %s process exited with status %s; starting it again in %.0f s",
                self.name,
                code,
                backoff,
            )
            if self._stopping.wait(backoff):
                return code
            self.restarts += 1
            backoff = min(backoff * 2, self.max_backoff)


def supervise(command: Sequence[str], name: str) -> int:
    """Run `command` under a Supervisor that stops on SIGTERM, SIGINT or SIGQUIT."""
    supervisor = Supervisor(command, name=name)

    def forward(signum: int, _frame: FrameType | None) -> None:
        supervisor.stop(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    return supervisor.run()


def celery_command(role: str, concurrency: int) -> list[str]:
    """The command line of one worker or beat process."""
    command = [sys.executable, "-m", WORKER_MODULE, role]
    if role in ("worker", "notify", "playbooks"):
        command += ["--concurrency", str(concurrency)]
    return command
