"""The migration files: named so that they sort in the order the revisions apply."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory

from incidents.migrate import alembic_config


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
