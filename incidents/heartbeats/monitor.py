"""Pings, the upkeep's expiry check, and replacing the definitions.

Every change of state is one conditional UPDATE whose WHERE holds the condition that
decides it, so of two processes that act on one heartbeat at once exactly one wins and
only the winner stores the synthetic alert (or its resolve), in the same transaction:

- expiry: `state <> 'expired' AND expires_at <= now` (two upkeeps: one incident);
- recovery: `state = 'expired'` (a ping and a redelivery together: one resolve).

On PostgreSQL the loser waits for the winner's row lock and then finds the condition
false; SQLite runs one writer at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.db import rowcount, session_scope
from incidents.exceptions import NotFound
from incidents.models import HEARTBEATS

from . import inject, store
from .spec import Heartbeat, HeartbeatSpec
from .store import ALIVE, EXPIRED, Replacement

log = logging.getLogger(__name__)

# Heartbeats expired per upkeep transaction; more wait for the next upkeep.
EXPIRE_BATCH = 100


def ping(session: Session, heartbeat: Heartbeat, now: datetime, settings: Settings) -> int | None:
    """Record a ping in the caller's transaction. When it ends a miss, store the resolve of
    the synthetic alert; return the pipeline job to hand out after commit, if any."""
    name = heartbeat.name
    values = {
        "last_ping_at": now,
        "expires_at": now + heartbeat.period,
        "state": ALIVE,
        "updated_at": now,
    }
    row = HEARTBEATS.c
    for _ in range(3):
        recovered = session.execute(
            update(HEARTBEATS).where(row.name == name, row.state == EXPIRED).values(**values)
        )
        if rowcount(recovered) == 1:
            log.info("heartbeat %s pinged again; its missing alert resolves", name)
            records = inject.resolves(session, [name], now)
            return inject.write(session, records, now, settings.ingest)
        kept = session.execute(
            update(HEARTBEATS).where(row.name == name, row.state != EXPIRED).values(**values)
        )
        if rowcount(kept) == 1:
            return None
        if session.scalar(select(row.name).where(row.name == name)) is None:
            # Defined, but its row is not (yet) there: this ping creates it.
            session.execute(HEARTBEATS.insert().values(name=name, **values))
            return None
        # It expired between the two statements: the first one now applies.
    raise RuntimeError(f"heartbeat {name}: the ping could not be recorded")


def ping_named(
    session: Session, name: str, now: datetime, settings: Settings
) -> tuple[Heartbeat, int | None]:
    """Ping a heartbeat by name (the API): the heartbeat, and the job of the resolve it
    stored, if any. 404 for a name that is not defined."""
    heartbeat = store.definitions(session).by_name.get(name)
    if heartbeat is None:
        raise NotFound(f"no heartbeat named {name!r}", field="name")
    return heartbeat, ping(session, heartbeat, now, settings)


def expire_due(factory: sessionmaker[Session], settings: Settings, now: datetime) -> list[int]:
    """The upkeep's check: every heartbeat past its deadline opens its incident, once.

    One indexed range read on `expires_at`; with nothing due, that is all it costs.
    """
    with session_scope(factory) as session:
        due = session.execute(
            select(HEARTBEATS.c.name, HEARTBEATS.c.last_ping_at, HEARTBEATS.c.expires_at)
            .where(HEARTBEATS.c.expires_at <= now, HEARTBEATS.c.state != EXPIRED)
            .order_by(HEARTBEATS.c.expires_at)
            .limit(EXPIRE_BATCH)
        ).all()
        if not due:
            return []
        defined = store.definitions(session).by_name
        records = []
        for name, last_ping_at, expires_at in due:
            heartbeat = defined.get(name)
            if heartbeat is None:
                continue  # removed since the read; its row goes with the next replacement
            won = session.execute(
                update(HEARTBEATS)
                .where(
                    HEARTBEATS.c.name == name,
                    HEARTBEATS.c.state != EXPIRED,
                    HEARTBEATS.c.expires_at <= now,
                )
                .values(state=EXPIRED, updated_at=now)
            )
            if rowcount(won) != 1:
                continue  # pinged meanwhile, or another upkeep got there first
            since = last_ping_at or expires_at - heartbeat.period
            records.append(inject.missing(heartbeat, expires_at, now - since, settings.ingest))
            log.warning(
                "heartbeat %s missed: no ping since %s",
                name,
                since.isoformat(),
                extra={"heartbeat": name, "last_ping_at": last_ping_at, "missed_at": expires_at},
            )
        job_id = inject.write(session, records, now, settings.ingest)
    return [] if job_id is None else [job_id]


@dataclass(frozen=True)
class Defined:
    """A replacement and the pipeline job of the resolves it stored, if any."""

    replacement: Replacement
    job_id: int | None


def define(
    session: Session,
    specs: Sequence[HeartbeatSpec],
    now: datetime,
    settings: Settings,
    *,
    via: str,
) -> Defined:
    """Replace the definitions; a removed heartbeat that was missed has its alert resolved."""
    replacement = store.replace(session, specs, now, via=via)
    return Defined(replacement, _resolve_removed(session, replacement, now, settings))


def apply_section(session: Session, settings: Settings, now: datetime) -> Defined | None:
    """Apply the config file's `heartbeats:` section if it changed since last applied."""
    if settings.heartbeats is None:
        return None
    replacement = store.apply_section(session, settings.heartbeats, now)
    if replacement is None:
        return None
    return Defined(replacement, _resolve_removed(session, replacement, now, settings))


def _resolve_removed(
    session: Session, replacement: Replacement, now: datetime, settings: Settings
) -> int | None:
    if not replacement.missed:
        return None
    records = inject.resolves(session, replacement.missed, now)
    return inject.write(session, records, now, settings.ingest)
