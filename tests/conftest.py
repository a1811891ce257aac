"""Shared fixtures: real PostgreSQL and Redis where present, SQLite always.

Outside CI a missing PostgreSQL, Redis or Alertmanager skips the tests that need it, with
a message. With CI=true the same absence fails them.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.config import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parent.parent

ALL_TABLES = ("alerts", "webhook_deliveries", "delivery_keys", "pipeline_jobs")


# The suite sets every setting it relies on; a developer's INCIDENTS_* variables (or a
# config file they name) must not leak into it.
for _name in [n for n in os.environ if n.startswith("INCIDENTS_")]:
    del os.environ[_name]


def require(what: str, reason: str) -> None:
    """Skip (outside CI) or fail (in CI) a test whose real dependency is missing."""
    message = f"{what} is not available: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true makes this a failure, not a skip)")
    pytest.skip(message)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def admin_pg_url(db: str = "postgres") -> str:
    """A URL to the development PostgreSQL server."""
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server as it runs on the development machine."""
    if not _port_open(PG_HOST, PG_PORT):
        require("PostgreSQL", f"nothing listens on {PG_HOST}:{PG_PORT}")
    return admin_pg_url()


@contextmanager
def throwaway_pg_database(prefix: str = "incidents_test") -> Iterator[str]:
    """Create a fresh database, yield its URL, drop it afterwards."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_pg_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_pg_url(name)
    finally:
        with psycopg.connect(admin_pg_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> Iterator[str]:
    """One migrated throwaway database for the whole run (tables emptied per test)."""
    from incidents.migrate import upgrade

    with throwaway_pg_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server as it runs on the development machine, on a database of its own."""
    if not _port_open(REDIS_HOST, REDIS_PORT):
        require("Redis", f"nothing listens on {REDIS_HOST}:{REDIS_PORT}")
    db = 1 + os.getpid() % 15
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


def _empty_tables(url: str) -> None:
    import sqlalchemy as sa

    from incidents.db import create_db_engine

    engine = create_db_engine(url)
    with engine.begin() as conn:
        names = set(sa.inspect(conn).get_table_names())
        tables = [t for t in ALL_TABLES if t in names] + sorted(
            names - set(ALL_TABLES) - {"alembic_version"}
        )
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: SQLite in a file, then PostgreSQL."""
    if request.param == "sqlite":
        from incidents.migrate import upgrade

        url = f"sqlite:///{tmp_path / 'incidents.db'}"
        upgrade(url)
        return url
    pg: str = request.getfixturevalue("pg_database")
    _empty_tables(pg)
    return pg


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database in a temporary file."""
    from incidents.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    upgrade(url)
    return url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The run's PostgreSQL database, emptied."""
    _empty_tables(pg_database)
    return pg_database


def make_settings(db_url: str, **overrides: Any) -> Settings:
    """Settings for a test: the given database, the test token, no YAML file."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "api_token": TOKEN,
        "broker_url": "",
        "config": "",
        "log_json": False,
    }
    values.update(overrides)
    # The P0 war room adds a Slack channel's rows to every P0 with a Slack token; the
    # tests that count an incident's notifications are not about it (tests/warroom are).
    values.setdefault("warroom", {"enabled": False})
    # Most tests follow an incident to its resolve at once; the quiet period (30 minutes
    # by default) has tests of its own, which set it.
    correlation = values.get("correlation")
    if correlation is None or isinstance(correlation, dict):
        values["correlation"] = {"quiet_period_seconds": 0, **(correlation or {})}
    return Settings(**values)


@pytest.fixture
def client_for() -> Iterator[Callable[..., TestClient]]:
    """Start the app on a database; the clients are closed (lifespan ended) afterwards."""
    from incidents.api.app import create_app

    stack: list[TestClient] = []

    def start(db_url: str, **overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(db_url, **overrides)))
        client.__enter__()
        stack.append(client)
        return client

    yield start
    for client in reversed(stack):
        client.__exit__(None, None, None)


@pytest.fixture
def client(db_url: str, client_for: Callable[..., TestClient]) -> TestClient:
    """The app on SQLite and on PostgreSQL."""
    return client_for(db_url)


def alertmanager_binary() -> str | None:
    """Path of the real Alertmanager binary, if installed."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
