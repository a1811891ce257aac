"""Apply the Alembic migrations from code (CLI and start-up)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from alembic import command
from incidents.db import create_db_engine, normalise_url
from incidents.exceptions import Unavailable

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def alembic_config(database_url: str) -> Config:
    """An Alembic Config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    # File names sort in revision order: new revisions take the next number as --rev-id.
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


def current(database_url: str) -> None:
    """Print the current revision."""
    command.current(alembic_config(database_url))


def check_database(database_url: str) -> None:
    """Open the database once; raise Unavailable with a one-line cause and fix if we cannot."""
    url = make_url(normalise_url(database_url))
    if url.get_backend_name() == "sqlite":
        _check_sqlite_folder(url)
    engine = create_db_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise Unavailable(_explain(url, exc)) from None
    finally:
        engine.dispose()


def _check_sqlite_folder(url: URL) -> None:
    database = url.database or ""
    if not database or database == ":memory:":
        return
    path = Path(database).absolute()
    folder = path.parent
    if not folder.is_dir():
        raise Unavailable(
            f"SQLite database {path}: folder {folder} does not exist; "
            f"create it with: mkdir -p {folder}"
        )
    # SQLite writes its journal files next to the database, so the folder must take new
    # files. A real write answers that where the permission bits do not (root, read-only
    # mounts, pseudo file systems).
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".incidents-probe-"):
            pass
    except OSError as exc:
        raise Unavailable(
            f"SQLite database {path}: cannot create files in folder {folder} "
            f"({exc.strerror}); make it writable for this user or choose another path"
        ) from None


def _explain(url: URL, exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None) or exc
    detail = " ".join(str(orig).split())
    if url.get_backend_name() == "sqlite":
        return f"cannot open SQLite database {url.database}: {detail}"
    host = url.host or "localhost"
    where = f"{host}:{url.port or 5432}"
    name = url.database or url.username or "postgres"
    user = url.username or "postgres"
    # Connection-time errors carry no SQLSTATE in psycopg; the server's text is stable.
    reason = detail.rsplit("failed: ", 1)[-1].split(" Is the server", 1)[0]
    if _missing_database(getattr(orig, "sqlstate", None), detail):
        return (
            f'database "{name}" does not exist on the PostgreSQL server at {where}; '
            f"create it with: createdb -h {host} -p {url.port or 5432} -U {user} {name}"
        )
    if "FATAL:" in detail or getattr(orig, "sqlstate", None):
        return f'the PostgreSQL server at {where} refused database "{name}": {reason}'
    return (
        f'cannot reach the PostgreSQL server at {where} (database "{name}"): {reason}; '
        "is the server running and listening there?"
    )


def _missing_database(sqlstate: str | None, detail: str) -> bool:
    """True when PostgreSQL said the database does not exist (3D000)."""
    return sqlstate == "3D000" or bool(re.search(r'database ".*" does not exist', detail))


def require_schema(database_url: str) -> None:
    """Raise Unavailable with the fix when the database has not been migrated yet."""
    from sqlalchemy import inspect

    check_database(database_url)
    engine = create_db_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            migrated = inspect(conn).has_table("alembic_version")
    finally:
        engine.dispose()
    if not migrated:
        shown = make_url(normalise_url(database_url)).render_as_string(hide_password=True)
        raise Unavailable(
            f"database {shown} has no tables yet; create them with: incidents db upgrade"
        )
