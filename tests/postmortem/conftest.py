"""The cascade, built once per module: on SQLite, or on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from incidents.migrate import upgrade
from tests.conftest import _empty_tables
from tests.postmortem.cascade import Cascade, cascade_on


def _url(request: pytest.FixtureRequest, tmp: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'incidents.db'}"
        upgrade(url)
        return url
    pg: str = request.getfixturevalue("pg_database")
    _empty_tables(pg)
    return pg


@pytest.fixture(scope="module", params=["sqlite"])
def cascade(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cascade]:
    """The scenario on SQLite."""
    with cascade_on(_url(request, tmp_path_factory.mktemp("pm"))) as built:
        yield built


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def both_cascade(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cascade]:
    """The scenario on SQLite, then on PostgreSQL."""
    with cascade_on(_url(request, tmp_path_factory.mktemp("pm"))) as built:
        yield built
