"""Apply the Alembic migrations from code (CLI and start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command
from incidents.db import normalise_url

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def alembic_config(database_url: str) -> Config:
    """An Alembic Config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(slug)s")
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


def current(database_url: str) -> None:
    """Print the current revision."""
    command.current(alembic_config(database_url))
