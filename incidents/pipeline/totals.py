"""Running totals of incident events, kept in the transaction that makes each change.

/metrics exposes them as counters. They live in the database rather than in a process:
incidents are opened by whichever worker runs the job, and a worker's in-memory counter
is seen by no scrape; every API replica reads these rows and reports the same values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from incidents.models import TOTALS

COUNTED_EVENTS = ("opened", "reopened", "resolved")


def count_events(session: Session, kinds: Iterable[str]) -> None:
    """Add these timeline kinds (those that are counted) to the totals."""
    counts = Counter(kind for kind in kinds if kind in COUNTED_EVENTS)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for event, number in sorted(counts.items()):
        # An upsert: the migration creates the rows, but a missing one must not lose counts.
        stmt = insert(TOTALS).values(event=event, count=number)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[TOTALS.c.event], set_={"count": TOTALS.c.count + number}
            )
        )
