"""Many rows in one statement: inserts and updates for sweeps that write hundreds at once.

psycopg's executemany sends one statement per row (pipelined, in one round trip), and
each row's parameters are adapted one by one: for a batch of hundreds, that work on
both sides is most of the cost. On PostgreSQL these send the batch as one JSON array
instead, which `jsonb_to_recordset` turns back into typed rows: one statement, one
parameter. On SQLite (in-process, no round trips) they use executemany.

Rows may name different columns: each run of consecutive rows naming the same ones is
one statement (so the rows keep their order), and columns a row does not name take their
defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Dialect, Table, TextClause, bindparam, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session


def insert(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], *, skip_conflicts: bool
) -> None:
    """Insert `rows`; with `skip_conflicts`, rows that break a unique key are left out."""
    dialect = session.get_bind().dialect
    for columns, run in _runs(rows):
        if dialect.name != "postgresql":
            statement = sqlite.insert(table)
            if skip_conflicts:
                statement = statement.on_conflict_do_nothing()
            session.execute(statement, run)
            continue
        together = _insert(dialect, table, columns, skip_conflicts)
        session.execute(together, {"rows": _document(run)})


def _runs(rows: Sequence[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """Consecutive rows that name the same columns, with those columns."""
    runs: list[tuple[tuple[str, ...], list[dict[str, Any]]]] = []
    for row in rows:
        columns = tuple(sorted(row))
        if runs and runs[-1][0] == columns:
            runs[-1][1].append(row)
        else:
            runs.append((columns, [row]))
    return runs


def update(session: Session, table: Table, rows: Sequence[dict[str, Any]], key: str = "id") -> None:
    """Set, in the row of `table` whose `key` each row names, the other columns it names."""
    dialect = session.get_bind().dialect
    for columns, run in _runs(rows):
        if dialect.name != "postgresql":
            statement = (
                table.update()
                .where(table.c[key] == bindparam(f"b_{key}"))
                .values({c: bindparam(f"b_{c}") for c in columns if c != key})
            )
            session.execute(statement, [{f"b_{c}": row[c] for c in columns} for row in run])
            continue
        session.execute(_update(dialect, table, columns, key), {"rows": _document(run)})


def _document(rows: Sequence[dict[str, Any]]) -> str:
    # Naive datetimes are UTC throughout the service (incidents.db.UTCDateTime).
    return orjson.dumps(list(rows), option=orjson.OPT_NAIVE_UTC).decode()


def _recordset(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    quote = dialect.identifier_preparer.quote
    typed = ", ".join(f"{quote(c)} {table.c[c].type.compile(dialect=dialect)}" for c in columns)
    return f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({typed})"


@lru_cache(maxsize=64)
def _insert(
    dialect: Dialect, table: Table, columns: tuple[str, ...], skip_conflicts: bool
) -> TextClause:
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    picked = ", ".join(f"r.{quote(c)}" for c in columns)
    conflict = " ON CONFLICT DO NOTHING" if skip_conflicts else ""
    return text(
        f"INSERT INTO {quote(table.name)} ({names}) SELECT {picked} "
        f"FROM {_recordset(dialect, table, columns)}{conflict}"
    )


@lru_cache(maxsize=64)
def _update(dialect: Dialect, table: Table, columns: tuple[str, ...], key: str) -> TextClause:
    quote = dialect.identifier_preparer.quote
    name = quote(table.name)
    sets = ", ".join(f"{quote(c)} = r.{quote(c)}" for c in columns if c != key)
    return text(
        f"UPDATE {name} SET {sets} FROM {_recordset(dialect, table, columns)} "
        f"WHERE {name}.{quote(key)} = r.{quote(key)}"
    )
