"""Alembic environment: the URL comes from the service's settings, not from alembic.ini."""

from __future__ import annotations

from sqlalchemy import Connection

import incidents.models  # noqa: F401  (registers the tables)
from alembic import context
from incidents.config import get_settings
from incidents.db import create_db_engine, metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations over a live connection (or one handed in by the caller)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = create_db_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `incidents db upgrade`")
run_migrations_online()
