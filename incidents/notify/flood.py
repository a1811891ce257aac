"""Flood protection per contact: a phone gets at most so many texts or calls a window.

What exceeds the limit is never dropped: the last text the window allows becomes one
summary of everything waiting ("7 more incidents: #12 P0 ..."), and the rows it covers
are marked `bundled`. Once the window is full, waiting rows are held until a place frees.
A playbook's approval request is neither bundled nor held: a summary would lose how to
answer it, and it expires; it still takes a place in the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import aggregate_time, session_scope, utcnow
from incidents.notify.approval_note import APPROVAL_EVENT
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.outbox import Claimed

# (sends, window) per contact, by channel.
LIMITS: dict[str, tuple[int, timedelta]] = {
    "sms": (5, timedelta(minutes=15)),
    "voice": (5, timedelta(minutes=15)),
}
SHOWN = 5  # incidents named in a summary; the rest are counted


@dataclass
class Plan:
    """What to do with one batch of claimed notifications."""

    alone: list[Claimed] = field(default_factory=list)
    # Per target: the rows one summary covers (the first carries it).
    bundles: list[list[Claimed]] = field(default_factory=list)
    # Held until a place in the window frees.
    held: list[tuple[Claimed, datetime]] = field(default_factory=list)


def plan(factory: sessionmaker[Session], channel: str, items: list[Claimed]) -> Plan:
    """Split a batch by what each contact's window still allows."""
    out = Plan()
    if channel not in LIMITS:
        out.alone = list(items)
        return out
    limit, window = LIMITS[channel]
    by_target: dict[str, list[Claimed]] = {}
    for item in items:
        by_target.setdefault(item.target, []).append(item)
    since = utcnow() - window
    n = NOTIFICATIONS.c
    with session_scope(factory) as session:
        for target, waiting in by_target.items():
            out.alone += [w for w in waiting if w.event == APPROVAL_EVENT]
            waiting = [w for w in waiting if w.event != APPROVAL_EVENT]
            if not waiting:
                continue
            sent, first = session.execute(
                select(func.count(), func.min(n.sent_at)).where(
                    n.channel == channel,
                    n.target == target,
                    n.status == "sent",
                    n.sent_at >= since,
                )
            ).one()
            room = limit - int(sent or 0)
            if room <= 0:
                free_at = aggregate_time(first) + window
                out.held += [(item, free_at) for item in waiting]
            elif len(waiting) <= room:
                out.alone += waiting
            else:
                out.alone += waiting[: room - 1]
                out.bundles.append(waiting[room - 1 :])
    return out


def summary(lines: list[tuple[int, str, str]]) -> tuple[str, ...]:
    """The detail lines of a summary: how many, and the first few incidents."""
    head = f"{len(lines)} more incidents:"
    shown = [f"#{iid} {severity} {title}" for iid, severity, title in lines[:SHOWN]]
    rest = [f"... and {len(lines) - SHOWN} more"] if len(lines) > SHOWN else []
    return (head, *shown, *rest)


def hold(
    factory: sessionmaker[Session],
    item: Claimed,
    until: datetime,
    why: str = "flood limit: held until the contact's window has room",
) -> None:
    """Put a claimed row back, due at `until` (not an attempt): by default because the
    contact's window is full."""
    n = NOTIFICATIONS.c
    with session_scope(factory) as session:
        session.execute(
            update(NOTIFICATIONS)
            .where(n.id == item.id, n.claim_token == item.token)
            .values(
                status="pending",
                not_before=until,
                attempts=n.attempts - 1,
                lease_until=None,
                claim_token=None,
                error=why,
                updated_at=utcnow(),
            )
        )


def mark_bundled(factory: sessionmaker[Session], items: list[Claimed], carrier: int) -> None:
    """The rows a sent summary covered."""
    n = NOTIFICATIONS.c
    now = utcnow()
    with session_scope(factory) as session:
        for item in items:
            session.execute(
                update(NOTIFICATIONS)
                .where(n.id == item.id, n.claim_token == item.token)
                .values(
                    status="bundled",
                    sent_at=now,
                    error=f"sent in summary notification {carrier}",
                    lease_until=None,
                    claim_token=None,
                    updated_at=now,
                )
            )
