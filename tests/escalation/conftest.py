"""The escalation tests' service (tests.escalation.ladder) and a session factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory
from tests.api.incident_pipe import Pipeline
from tests.escalation.ladder import start


@pytest.fixture
def pipe(db_url: str, client_for: Callable[..., TestClient]) -> Iterator[Pipeline]:
    pipeline = start(db_url, client_for)
    yield pipeline
    pipeline.close()


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    bound = create_db_engine(db_url)
    yield make_session_factory(bound)
    bound.dispose()
