"""The system under test: a throwaway PostgreSQL database, the server process, CPU counters."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
HOST = "127.0.0.1"
TOKEN = "bench-token"
ROOT = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pg_url(db: str) -> str:
    """A URL to the development PostgreSQL server (trust auth)."""
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def throwaway_database(tag: str) -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (even with connections left)."""
    import psycopg

    name = f"incidents_bench_{os.getpid()}_{tag}"
    with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name)
    finally:
        with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float) -> int:
    # No proxies: every request of the benchmark stays on 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class Server:
    """`incidents serve` in a subprocess, on a free port, logging to a temporary file.

    With no broker the pipeline runs in the server's own embedded worker. A `memory://`
    broker is process-local and nobody consumes it: the server then only ingests, which
    separates the cost of ingestion from that of the pipeline.
    """

    def __init__(
        self,
        database_url: str,
        log_level: str,
        broker_url: str = "",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.log_level = log_level
        self.broker_url = broker_url
        self.extra_env = dict(extra_env or {})
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_at = 0.0
        self.stopped_at = 0.0
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="incidents-bench-", suffix=".log", delete=False
        )

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (it migrates the database first) and wait until /readyz is 200."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
        env.update(
            INCIDENTS_DATABASE_URL=self.database_url,
            INCIDENTS_API_TOKEN=TOKEN,
            INCIDENTS_BROKER_URL=self.broker_url,
            INCIDENTS_CONFIG="",
            INCIDENTS_LOG_LEVEL=self.log_level,
        )
        env.update(self.extra_env)
        self.port = _free_port()
        command = ["-m", "incidents.cli", "serve", "--host", HOST, "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        # /readyz would ping a memory:// broker as if it were Redis, and fail.
        probe = "/healthz" if self.broker_url.startswith("memory:") else "/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.tail()}")
            if _get(f"http://{HOST}:{self.port}{probe}", timeout=2) == 200:
                self.ready_at = time.monotonic()
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        """Ask the server to shut down gracefully; kill it if it does not."""
        if self.proc is not None and self.proc.poll() is None:
            self.stopped_at = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    @property
    def served_seconds(self) -> float:
        """How long the server was up and ready."""
        if not self.ready_at:
            return 0.0
        return (self.stopped_at or time.monotonic()) - self.ready_at

    def log_size(self) -> int:
        """Bytes the server has logged so far."""
        return Path(self._log.name).stat().st_size

    def tail(self, limit: int = 4000) -> str:
        """The end of the server's log."""
        self._log.flush()
        return Path(self._log.name).read_bytes()[-limit:].decode("utf-8", "replace")

    def close(self) -> None:
        """Stop the server and remove its log."""
        self.stop()
        self._log.close()
        with contextlib.suppress(OSError):
            Path(self._log.name).unlink()


def _ticks(stat_path: str) -> int:
    try:
        with open(stat_path, "rb") as fh:
            data = fh.read()
    except OSError:
        return 0
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as fh:
                if fh.read().strip() == b"postgres":
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


@dataclass
class CpuSample:
    """CPU time (seconds) consumed so far, by who."""

    at: float
    server_loop: float  # the server's main thread: event loop, HTTP, parsing, JSON
    server_other: float  # its other threads: ingest writer, embedded worker, thread pool
    postgres: dict[int, float]
    client: float
    machine_busy: float
    machine_total: float


def sample_cpu(server_pid: int) -> CpuSample:
    """Read the CPU counters of the server, PostgreSQL, this process and the machine."""
    loop = 0.0
    other = 0.0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{server_pid}/task"):
            secs = _ticks(f"/proc/{server_pid}/task/{tid}/stat") / CLOCK_TICKS
            if int(tid) == server_pid:
                loop += secs
            else:
                other += secs
    postgres = {pid: _ticks(f"/proc/{pid}/stat") / CLOCK_TICKS for pid in _postgres_pids()}
    with open("/proc/stat", "rb") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return CpuSample(
        at=time.perf_counter(),
        server_loop=loop,
        server_other=other,
        postgres=postgres,
        client=time.process_time(),
        machine_busy=(total - idle) / CLOCK_TICKS,
        machine_total=total / CLOCK_TICKS,
    )


@dataclass
class CpuUse:
    """Share of one core used during an interval, in percent, by who."""

    server_loop: float
    server_other: float
    postgres: float
    client: float
    machine: float  # percent of all cores
    other: float  # what the machine used beyond the three above: kernel, other processes

    @property
    def server(self) -> float:
        """Both parts of the server process."""
        return self.server_loop + self.server_other


def cpu_between(before: CpuSample, after: CpuSample) -> CpuUse:
    """Percent of one core each party used between two samples."""
    wall = max(after.at - before.at, 1e-9)
    pg = sum(secs - before.postgres.get(pid, 0.0) for pid, secs in after.postgres.items())
    total = max(after.machine_total - before.machine_total, 1e-9)
    busy = after.machine_busy - before.machine_busy
    ours = (
        after.server_loop
        - before.server_loop
        + after.server_other
        - before.server_other
        + pg
        + after.client
        - before.client
    )
    return CpuUse(
        server_loop=100 * (after.server_loop - before.server_loop) / wall,
        server_other=100 * (after.server_other - before.server_other) / wall,
        postgres=100 * pg / wall,
        client=100 * (after.client - before.client) / wall,
        machine=100 * busy / total,
        other=max(0.0, 100 * (busy - ours) / wall),
    )


class Worker:
    """A Celery worker process (`incidents worker`) consuming the Redis broker; with other
    `args`, any other `incidents` command that runs beside the server (`beat`). `cwd` is
    where it runs (beat keeps its schedule file there); this checkout is imported still."""

    def __init__(
        self,
        database_url: str,
        broker_url: str,
        extra_env: dict[str, str],
        args: Sequence[str] = ("worker", "--concurrency", "1"),
        cwd: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self.extra_env = extra_env
        self.args = list(args)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f"incidents-bench-{self.args[0]}-", suffix=".log", delete=False
        )

    def start(self) -> None:
        """Start the process; it connects to the broker on its own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
        env.update(
            INCIDENTS_DATABASE_URL=self.database_url,
            INCIDENTS_BROKER_URL=self.broker_url,
            INCIDENTS_CONFIG="",
            INCIDENTS_LOG_LEVEL="WARNING",
        )
        env.update(self.extra_env)
        if self.cwd is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "incidents.cli", *self.args],
            cwd=self.cwd or ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def tail(self, limit: int = 4000) -> str:
        """The end of the process's log."""
        self._log.flush()
        return Path(self._log.name).read_bytes()[-limit:].decode("utf-8", "replace")

    def stop(self) -> None:
        """Stop the process (warm shutdown, then kill) and remove its log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
