"""Database errors by cause: the request's data is a 4xx, only unavailability is a 503.

The routes here run real statements that fail in the real database; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from incidents.db import utcnow
from incidents.models import INCIDENTS, Silence
from tests.conftest import AUTH


def _add_routes(app: FastAPI) -> None:
    sessions = app.state.service.sessions

    @app.get("/test/cast")
    def cast(value: str) -> int:
        with sessions() as session:
            return int(
                session.execute(sa.text("SELECT CAST(:v AS INTEGER)"), {"v": value}).scalar()
            )

    @app.get("/test/int4")
    def int4() -> int:
        with sessions() as session:
            row = session.execute(sa.select(INCIDENTS.c.id).where(INCIDENTS.c.id == 2**31))
            return len(row.all())

    @app.get("/test/bind-overflow")
    def bind_overflow() -> int:
        early = datetime(1, 1, 1, 0, 3, tzinfo=timezone(timedelta(hours=1, minutes=5)))
        with sessions() as session:
            rows = session.execute(sa.select(INCIDENTS.c.id).where(INCIDENTS.c.opened_at >= early))
            return len(rows.all())

    @app.get("/test/duplicate")
    def duplicate() -> int:
        now = utcnow()
        with sessions() as session:
            for _ in range(2):
                session.add(
                    Silence(
                        id="same",
                        matchers=["a=b"],
                        starts_at=now,
                        ends_at=now,
                        created_by="t",
                        comment="t",
                        created_at=now,
                    )
                )
                session.flush()
        return 0

    @app.get("/test/bug")
    def bug() -> int:
        with sessions() as session:
            return len(session.execute(sa.text("SELECT no_such_column FROM incidents")).all())


@pytest.fixture
def app_client(client: TestClient) -> TestClient:
    _add_routes(client.app)  # type: ignore[arg-type]
    return client


@pytest.fixture
def pg_app_client(pg_url: str, client_for: Callable[..., TestClient]) -> TestClient:
    client = client_for(pg_url)
    _add_routes(client.app)  # type: ignore[arg-type]
    return client


def test_value_the_column_type_cannot_hold_is_422(app_client: TestClient) -> None:
    # SQLAlchemy converts the time to UTC while binding it: year 0 does not exist.
    response = app_client.get("/test/bind-overflow", headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_value"
    assert "Retry-After" not in response.headers


def test_postgresql_data_errors_are_422_not_503(pg_app_client: TestClient) -> None:
    # SQLite has no such errors: it stores what it is given.
    for url in ["/test/cast?value=abc", "/test/cast?value=99999999999", "/test/int4"]:
        response = pg_app_client.get(url, headers=AUTH)
        assert response.status_code == 422, (url, response.text)
        body = response.json()
        assert body["error"] == "invalid_value"
        assert "Retry-After" not in response.headers
        # The database's reason, one line, not the statement or its parameters.
        assert "SELECT" not in body["message"]
        assert len(body["message"]) < 300


def test_integrity_error_is_409(app_client: TestClient) -> None:
    response = app_client.get("/test/duplicate", headers=AUTH)
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "conflict"


def test_programming_error_is_500_not_503(pg_app_client: TestClient) -> None:
    # On PostgreSQL only: SQLite reports an unknown column as an OperationalError.
    raw = TestClient(pg_app_client.app, raise_server_exceptions=False)
    response = raw.get("/test/bug", headers=AUTH)
    assert response.status_code == 500, response.text
    assert response.json()["error"] == "internal_error"
    assert "Retry-After" not in response.headers


def test_database_down_is_still_503(client_for: Callable[..., TestClient]) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    client = client_for("postgresql://postgres@127.0.0.1:1/nowhere")
    response = client.get("/api/v1/incidents/1", headers=AUTH)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert response.json()["error"] == "unavailable"
