"""Start-up as an operator meets it: a database that is not there, a typo in the environment.

Each case runs the real console script (or `main`) against the real PostgreSQL server, a
port where none listens, or a SQLite path in a folder that is missing or refuses files.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from incidents.cli import main
from tests.conftest import PG_HOST, PG_PORT, PG_USER, admin_pg_url

TYPO = "INCIDENTS_INGEST__MAX_BODY_BYTE"


def incidents_script() -> list[str]:
    """The installed console script, or the module when it is not installed."""
    script = Path(sys.executable).with_name("incidents")
    return [str(script)] if script.exists() else [sys.executable, "-m", "incidents.cli"]


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update(INCIDENTS_LOG_JSON="false", INCIDENTS_CONFIG="", **settings)
    return env


def serve(database_url: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """`incidents serve` on a port nobody uses; it must exit by itself."""
    return subprocess.run(
        [*incidents_script(), "serve", "--port", str(free_port())],
        env=clean_env(INCIDENTS_DATABASE_URL=database_url, **extra),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def db_upgrade(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.setenv("INCIDENTS_DATABASE_URL", database_url)
    capsys.readouterr()
    code = main(["db", "upgrade"])
    return code, capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def the_error(stderr: str) -> str:
    """The one line that explains the failure; nothing like a traceback around it."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("incidents: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def database_exists(name: str) -> bool:
    with psycopg.connect(admin_pg_url(), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@pytest.mark.postgres
def test_a_missing_postgresql_database_says_how_to_create_it(
    pg_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"incidents_missing_{uuid.uuid4().hex[:8]}"
    url = admin_pg_url(name)
    expected = (
        f'incidents: database "{name}" does not exist on the PostgreSQL server at '
        f"{PG_HOST}:{PG_PORT}; create it with: createdb -h {PG_HOST} -p {PG_PORT} "
        f"-U {PG_USER} {name}"
    )
    result = serve(url, tmp_path)
    assert result.returncode == 1, result.stderr
    assert the_error(result.stderr) == expected

    code, err = db_upgrade(url, monkeypatch, capsys)
    assert code == 1
    assert the_error(err) == expected
    assert not database_exists(name)


def test_a_postgresql_server_that_is_not_running_is_named_by_host_and_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/incidents"
    code, err = db_upgrade(url, monkeypatch, capsys)
    assert code == 1
    line = the_error(err)
    assert line.startswith(f"incidents: cannot reach the PostgreSQL server at 127.0.0.1:{port}")
    assert "Connection refused" in line and "running" in line

    result = serve(url, tmp_path)
    assert result.returncode == 1
    assert the_error(result.stderr) == line


def test_sqlite_in_a_missing_folder_says_which_folder_and_warns_of_typos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "no" / "such"
    url = f"sqlite:///{folder / 'incidents.db'}"
    result = serve(url, tmp_path, **{TYPO: "1000"})
    assert result.returncode == 1
    assert the_error(result.stderr) == (
        f"incidents: SQLite database {folder / 'incidents.db'}: folder {folder} does not "
        f"exist; create it with: mkdir -p {folder}"
    )
    # Start-up also named the variable that sets nothing, as a warning, before failing.
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and TYPO in warnings[0], result.stderr
    assert "did you mean INCIDENTS_INGEST__MAX_BODY_BYTES?" in warnings[0]

    code, err = db_upgrade(url, monkeypatch, capsys)
    assert code == 1
    assert "does not exist; create it with: mkdir -p" in the_error(err)
    assert not folder.exists()


def read_only_folder(tmp_path: Path) -> Path:
    """A folder in which this user cannot create files."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return folder
    # Root writes through permission bits; no one can create a file in /proc.
    return Path("/proc")


def test_sqlite_in_a_folder_that_refuses_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = read_only_folder(tmp_path)
    url = f"sqlite:///{folder / 'incidents.db'}"
    code, err = db_upgrade(url, monkeypatch, capsys)
    assert code == 1
    line = the_error(err)
    assert line.startswith(
        f"incidents: SQLite database {folder / 'incidents.db'}: cannot create files in "
        f"folder {folder} ("
    )
    assert "writable" in line


@pytest.mark.redis
def test_the_worker_warns_of_an_unknown_setting_at_start(redis_url: str, tmp_path: Path) -> None:
    env = clean_env(
        INCIDENTS_DATABASE_URL=f"sqlite:///{tmp_path / 'incidents.db'}",
        INCIDENTS_BROKER_URL=redis_url,
        INCIDENTS_PIPELINE__SWEEP_INTERVALL_SECONDS="5",
    )
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*incidents_script(), "worker", "--concurrency", "1"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "INCIDENTS_PIPELINE__SWEEP_INTERVALL_SECONDS" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    line = next(x for x in log.read_text().splitlines() if "SWEEP_INTERVALL" in x)
    assert " WARNING " in line
    assert "did you mean INCIDENTS_PIPELINE__SWEEP_INTERVAL_SECONDS?" in line
