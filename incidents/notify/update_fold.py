"""Joins folded into the update already waiting, so the thread reply misses none.

The routing stage keeps at most one pending `updated` row per (incident, channel,
target). A later join or re-root does not get a row of its own: its detail lines are
folded into the waiting row's, and the reply says how many alerts joined in all and on
which services, not only what the first join said.

A waiting row written by an earlier job is updated in place while it is still pending;
if the worker claimed it meanwhile, the folded lines go out as an update of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from incidents.db import rowcount
from incidents.notify.models import NOTIFICATIONS

_ONE = re.compile(r"^alert on (?P<service>.+?) joined: .*$", re.DOTALL)
_MANY = re.compile(r"^(?P<count>\d+) alerts joined, on (?P<services>.*)$", re.DOTALL)
# Services a folded line names; the count says how many alerts there were in all.
MAX_SERVICES = 10

Key = tuple[int, str, str]


def fold(lines: list[str], more: list[str]) -> list[str]:
    """`lines` with `more` folded in: other lines kept once, in order, and every join
    summed into one line (a single join keeps its own words)."""
    kept: list[str] = []
    joins: list[str] = []
    count = 0
    services: list[str] = []
    for line in [*lines, *more]:
        one, many = _ONE.match(line), _MANY.match(line)
        if one is None and many is None:
            if line not in kept:
                kept.append(line)
            continue
        joins.append(line)
        if one is not None:
            count += 1
            named = [one["service"]]
        else:
            assert many is not None
            count += int(many["count"])
            named = [s for s in many["services"].removesuffix(" ...").split(", ") if s]
        services += [s for s in named if s not in services]
    if len(joins) == 1:
        return [*kept, joins[0]]
    if not joins:
        return kept
    shown = ", ".join(services[:MAX_SERVICES]) + (" ..." if len(services) > MAX_SERVICES else "")
    return [*kept, f"{count} alerts joined, on {shown}"]


@dataclass
class Waiting:
    """An `updated` row waiting to be sent: one of this job's, or one stored earlier."""

    row: dict[str, Any] | None = None  # this job's row (not inserted yet)
    stored_id: int | None = None
    details: list[str] = field(default_factory=list)
    # Folded into a stored row: what to send on its own if the worker took that row.
    extra: list[str] = field(default_factory=list)
    fallback: dict[str, Any] | None = None
    # The events folded in already (two receivers may name the same target).
    seen: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, row: dict[str, Any]) -> Waiting:
        """The waiting update this job's `row` is."""
        return cls(row=row, seen={row["event_key"]})


def stored(session: Session, incident_ids: list[int]) -> dict[Key, Waiting]:
    """The updates still waiting to be sent, by (incident, channel, target)."""
    n = NOTIFICATIONS.c
    rows = session.execute(
        select(n.id, n.incident_id, n.channel, n.target, n.details)
        .where(n.incident_id.in_(incident_ids))
        .where(n.event == "updated", n.status == "pending")
        .order_by(n.id)
    )
    return {(i, c, t): Waiting(stored_id=id_, details=list(d or [])) for id_, i, c, t, d in rows}


def add(waiting: Waiting, row: dict[str, Any]) -> None:
    """Fold a would-be row's details into the update waiting for its target."""
    if row["event_key"] in waiting.seen:
        return
    waiting.seen.add(row["event_key"])
    if waiting.row is not None:
        waiting.row["details"] = fold(waiting.row["details"], row["details"])
        return
    waiting.details = fold(waiting.details, row["details"])
    waiting.extra = fold(waiting.extra, row["details"])
    if waiting.fallback is None:
        waiting.fallback = row
    waiting.fallback = {**waiting.fallback, "details": waiting.extra}


def write_stored(session: Session, waiting: dict[Key, Waiting]) -> list[dict[str, Any]]:
    """Store what was folded into earlier jobs' rows; return the rows to insert instead
    for those the worker took meanwhile."""
    n = NOTIFICATIONS.c
    instead: list[dict[str, Any]] = []
    for item in waiting.values():
        if item.stored_id is None or item.fallback is None:
            continue
        changed = session.execute(
            update(NOTIFICATIONS)
            .where(n.id == item.stored_id, n.status == "pending")
            .values(details=item.details)
        )
        if not rowcount(changed):
            instead.append(item.fallback)
    return instead
