"""PostgreSQL advisory locks that keep correlation correct across processes.

- The graph lock: every incident-stage job (and the upkeep closing quiet incidents) holds
  it shared; replacing the service graph and people's resolve/reopen/merge hold it
  exclusively. Partitions are computed from the graph, so
  no job may run while the graph (and with it the partitions) changes.
- Partition locks: one per weakly connected component of the graph (hashed into a fixed
  number of slots). Rule v2 only ever relates services of one component, so jobs whose
  alerts lie in different components correlate in parallel, and two jobs with related
  alerts queue on the same slot and still open one incident.
- A job that spans more slots than MAX_SLOTS_PER_JOB takes the graph lock exclusively
  instead: a storm that touches much of the graph runs alone rather than filling
  PostgreSQL's shared lock table.
- Storm-cap reservations: each opening page a running job takes from the minute's
  budget is one lock of its own, which other jobs count in `pg_locks` before that job
  commits (see `pipeline.storm`). They are only ever tried, never waited for.

All are transaction-scoped. SQLite has one writer at a time and needs none of them.
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Iterable
from enum import IntEnum

from sqlalchemy import text
from sqlalchemy.orm import Session

# How many slots the partitions are hashed into; a collision only serialises two jobs.
PARTITION_SLOTS = 4096
MAX_SLOTS_PER_JOB = 64


class LockKey(IntEnum):
    """Advisory-lock keys: any constants work if every process uses the same ones."""

    # The whole graph (single-key form).
    CORRELATION = 0x1C1DE275
    # The namespace of partition slots (two-key form: namespace, slot).
    PARTITION = 0x1C1DE276
    # The namespace of playbook slots (two-key form): a playbook's run limits.
    PLAYBOOK = 0x1C1DE277
    # The storm cap (two-key form): 0 while a job writes the storm page; any other key is
    # one opening page a running job has taken from the minute's budget.
    STORM = 0x1C1DE278
    # Writing stale-alert timeline entries (single-key form): one upkeep at a time.
    STALE = 0x1C1DE279


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def try_lock_stale(session: Session) -> bool:
    """Take the stale-alert lock until the transaction ends, without waiting; False when
    another upkeep holds it (it is doing the same work)."""
    if not _postgres(session):
        return True
    taken = session.execute(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": int(LockKey.STALE)}
    ).scalar()
    return bool(taken)


def lock_graph(session: Session, *, exclusive: bool) -> None:
    """Hold the graph lock until the transaction ends."""
    if _postgres(session):
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(text(f"SELECT {function}(:key)"), {"key": int(LockKey.CORRELATION)})


def slot_of(partition: str) -> int:
    """The lock slot of a graph partition (stable across processes and restarts)."""
    return zlib.crc32(partition.encode()) % PARTITION_SLOTS


def lock_partitions(session: Session, partitions: Iterable[str]) -> bool:
    """Take the graph lock shared and the partitions' slots, in one global order so two
    jobs cannot deadlock; False when there were too many and the whole graph was locked."""
    if not _postgres(session):
        return True
    slots = sorted({slot_of(p) for p in partitions})
    if len(slots) > MAX_SLOTS_PER_JOB:
        lock_graph(session, exclusive=True)
        return False
    lock_graph(session, exclusive=False)
    _lock_slots(session, slots)
    return True


def lock_more_partitions(session: Session, partitions: Iterable[str]) -> None:
    """Also lock these partitions' slots, in a job that already holds the graph lock (a
    muted alert whose inhibitor's incident lies in another part of the graph, or a graph
    replaced while the job waited for its first slots).

    The incident stage takes its inhibitors' partitions with its first slots, in the one
    global order; slots still missing here are those of an inhibitor that fired after
    that read, or of a graph replaced meanwhile. They come after slots the job holds, so
    they may lie below one of them: two such jobs waiting for each other deadlock,
    PostgreSQL aborts one (after `deadlock_timeout`) and the runner retries its job. Such
    races are rare, and what to lock is only known under the first locks."""
    if _postgres(session):
        _lock_slots(session, sorted({slot_of(p) for p in partitions}))


def _lock_slots(session: Session, slots: list[int]) -> None:
    for slot in slots:
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :slot)"),
            {"space": int(LockKey.PARTITION), "slot": slot},
        )


def lock_playbook(session: Session, playbook_id: str) -> None:
    """Hold a playbook's lock until the transaction ends: its run counts stay exact while
    any number of jobs create runs at once."""
    if _postgres(session):
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :slot)"),
            {"space": int(LockKey.PLAYBOOK), "slot": zlib.crc32(playbook_id.encode()) % 2**31},
        )


def reserve_page(session: Session) -> bool:
    """Take one opening page from the storm budget until the transaction ends: a lock of
    its own, seen by every other job at once. False on SQLite (nothing to reserve)."""
    if not _postgres(session):
        return False
    while True:  # a random key taken by another job (one in two billion): draw again
        key = 1 + secrets.randbelow(2**31 - 1)
        if session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:space, :key)"),
            {"space": int(LockKey.STORM), "key": key},
        ):
            return True


def reserved_pages(session: Session) -> int:
    """Opening pages reserved by the running jobs of this database (this one's included)."""
    return int(
        session.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid = CAST(:space AS oid) AND objsubid = 2 AND objid <> 0"
            ),
            {"space": int(LockKey.STORM)},
        )
        or 0
    )


def write_storm_page(session: Session) -> bool:
    """Whether this job may write the paging storm entry: False while another running job
    holds that right (it pages for both). Always True on SQLite."""
    if not _postgres(session):
        return True
    return bool(
        session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:space, 0)"), {"space": int(LockKey.STORM)}
        )
    )
