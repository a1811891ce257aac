"""Fixtures shared by the API tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.incident_pipe import Pipeline


@pytest.fixture
def pipe(client: TestClient, db_url: str) -> Iterator[Pipeline]:
    p = Pipeline(client, db_url)
    yield p
    p.close()


@pytest.fixture
def pipe_unheld(db_url: str, client_for: Callable[..., TestClient]) -> Iterator[Pipeline]:
    """A pipe whose opening pages are not held (`open_hold_seconds: 0`): every page counts
    as sent when it is written, so raise and merge paging can be seen one step at a time."""
    p = Pipeline(client_for(db_url, correlation={"open_hold_seconds": 0}), db_url)
    yield p
    p.close()
