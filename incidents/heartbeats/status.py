"""How each heartbeat stands, for `GET /api/v1/heartbeats` and `/metrics`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from . import store
from .store import WAITING, Stored


@dataclass(frozen=True)
class Status:
    """One heartbeat's state, last ping and deadline."""

    name: str
    state: str
    last_ping_at: datetime | None
    expires_at: datetime | None
    # Since the last ping, or since its clock started (its definition) if never pinged.
    seconds_since_ping: float


def statuses(session: Session, now: datetime) -> tuple[Stored, list[Status]]:
    """The stored definitions and the status of each, in the document's order."""
    stored = store.read(session)
    states = store.rows(session)
    out = []
    for spec in stored.specs:
        row = states.get(spec.name)
        if row is None:
            # Only between a replacement and the sync of its rows: not yet watched.
            out.append(Status(spec.name, WAITING, None, None, 0.0))
            continue
        since = row.last_ping_at
        if since is None and row.expires_at is not None:
            since = row.expires_at - spec.period()
        seconds = 0.0 if since is None else max(0.0, (now - since).total_seconds())
        out.append(Status(spec.name, row.state, row.last_ping_at, row.expires_at, seconds))
    return stored, out


def figures(session: Session, now: datetime) -> dict[str, tuple[float, bool]]:
    """Per heartbeat: seconds since its last ping, and whether it is missed."""
    _, found = statuses(session, now)
    return {s.name: (s.seconds_since_ping, s.state == store.EXPIRED) for s in found}
