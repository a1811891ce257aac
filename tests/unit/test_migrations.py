"""The migration files: named so that they sort in the order the revisions apply."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import incidents.models  # noqa: F401  (registers the tables)
from alembic import command
from incidents.db import JSONType, UTCDateTime, create_db_engine, metadata, utcnow
from incidents.migrate import alembic_config, upgrade
from tests.conftest import throwaway_pg_database

FK_TABLES = ("incident_alerts", "timeline", "incident_services")


def _chain() -> list[Path]:
    """The migration files from the first revision to the head, following down_revision."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(scripts.get_heads()) == 1, "the migrations branch: merge the heads"
    newest_first = [Path(s.path) for s in scripts.walk_revisions()]
    return newest_first[::-1]


def test_migration_files_sort_in_revision_order() -> None:
    chain = _chain()
    assert [p.name for p in chain] == sorted(p.name for p in chain)


def test_migration_files_are_numbered_one_after_another() -> None:
    numbers = [p.name.split("_", 1)[0] for p in _chain()]
    assert numbers == [f"{n:04d}" for n in range(1, len(numbers) + 1)]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all: SQLite in a file, then a PostgreSQL of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    request.getfixturevalue("pg_server")
    with throwaway_pg_database("incidents_migrate") as url:
        yield url


def _insert(conn: sa.Connection, table: str, **values: Any) -> None:
    """Insert one row through bare columns: the models may be ahead of the schema."""

    def kind(value: Any) -> Any:
        if isinstance(value, datetime):
            return UTCDateTime()
        return JSONType if isinstance(value, dict | list) else None

    columns = [sa.column(name, kind(value)) for name, value in values.items()]
    conn.execute(sa.insert(sa.table(table, *columns)).values(**values))


def _incident(conn: sa.Connection, incident_id: int) -> None:
    now = utcnow()
    _insert(
        conn,
        "incidents",
        id=incident_id,
        status="open",
        severity="P1",
        title="t",
        opened_at=now,
        updated_at=now,
        first_alert_at=now,
        last_alert_at=now,
        services=["api"],
        root_cause_candidates=["api"],
        blast_radius=[],
        flapping=False,
    )


def _parts(conn: sa.Connection, incident_id: int, fingerprint: str) -> None:
    """A link, a timeline entry and a by-service row of the incident."""
    now = utcnow()
    _insert(
        conn,
        "incident_alerts",
        incident_id=incident_id,
        fingerprint=fingerprint,
        service="api",
        severity="P1",
        starts_at=now,
        status="firing",
        joined_at=now,
        joined_because={},
    )
    _insert(
        conn,
        "timeline",
        incident_id=incident_id,
        at=now,
        kind="opened",
        actor="system",
        message="m",
        pages=True,
        data={},
    )
    _insert(conn, "incident_services", incident_id=incident_id, service="api", open=True)


def _counts(conn: sa.Connection) -> dict[str, list[int]]:
    return {
        table: sorted(conn.execute(sa.text(f"SELECT incident_id FROM {table}")).scalars())
        for table in FK_TABLES
    }


def _counts_of(engine: sa.Engine) -> dict[str, list[int]]:
    with engine.connect() as conn:
        return _counts(conn)


def test_foreign_keys_upgrade_deletes_orphans_and_counts_them(
    empty_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade(empty_url, "0005_graph")
    engine = create_db_engine(empty_url)
    try:
        with engine.begin() as conn:
            _incident(conn, 1)
            _parts(conn, 1, "kept")
            _parts(conn, 99, "orphan")
        with caplog.at_level(logging.INFO, logger="incidents.migrate"):
            upgrade(empty_url)
        assert _counts_of(engine) == {key: [1] for key in FK_TABLES}
        for table in FK_TABLES:
            assert f"deleted 1 row(s) of {table}" in caplog.text
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            _parts(conn, 99, "orphan again")
        # The parts of an incident go with it.
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM incidents WHERE id = 1"))
        assert _counts_of(engine) == {key: [] for key in FK_TABLES}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_ends_with_the_models_schema(empty_url: str) -> None:
    upgrade(empty_url)
    command.downgrade(alembic_config(empty_url), "0005_graph")
    engine = create_db_engine(empty_url)
    try:
        with engine.begin() as conn:
            # Without the constraints again: a row of a missing incident is accepted.
            _parts(conn, 7, "orphan")
            assert not sa.inspect(conn).get_foreign_keys("timeline")
        upgrade(empty_url)
    finally:
        engine.dispose()
    # A fresh engine: SQLite's reflection must not see the schema of before the upgrade.
    engine = create_db_engine(empty_url)
    try:
        with engine.connect() as conn:
            assert _counts(conn) == {key: [] for key in FK_TABLES}
            for table in FK_TABLES:
                [fk] = sa.inspect(conn).get_foreign_keys(table)
                assert (fk["referred_table"], fk["constrained_columns"]) == (
                    "incidents",
                    ["incident_id"],
                )
                assert fk["options"].get("ondelete") == "CASCADE"
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
