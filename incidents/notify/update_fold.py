"""Joins folded into the update already waiting, so the thread reply misses none.

The routing stage keeps at most one pending `updated` row per (incident, channel,
target). A later join or re-root is not sent on its own: its detail lines are folded into
the waiting row's (its own row is kept as `cancelled`, saying so), and the reply says how
many alerts joined in all and on which services, not only what the first join said.

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


FOLDED = "folded into the update waiting for this target"


@dataclass
class _Waiting:
    """An `updated` row waiting to be sent: one of this job's, or one stored earlier."""

    row: dict[str, Any] | None = None  # this job's row (not inserted yet)
    stored_id: int | None = None
    details: list[str] = field(default_factory=list)
    # Folded into a stored row: the lines to send on their own if the worker took that
    # row meanwhile, and the first folded event's row that would carry them.
    extra: list[str] = field(default_factory=list)
    carrier: dict[str, Any] | None = None


class Updates:
    """The job's updates: at most one waiting per (incident, channel, target); later
    joins and re-roots fold into it and are kept as `cancelled` rows saying so. An event
    routed before (a big job's later slice sees earlier slices' events again) has a row
    already and is not folded twice."""

    def __init__(self, session: Session, incident_ids: list[int], event_keys: list[str]):
        n = NOTIFICATIONS.c
        self._waiting: dict[Key, _Waiting] = {
            (i, c, t): _Waiting(stored_id=id_, details=list(d or []))
            for id_, i, c, t, d in session.execute(
                select(n.id, n.incident_id, n.channel, n.target, n.details)
                .where(n.incident_id.in_(incident_ids))
                .where(n.event == "updated", n.status == "pending")
                .order_by(n.id)
            )
        }
        self._routed: set[tuple[int, str, str, str]] = set()
        if event_keys:
            self._routed = {
                (i, e, c, t)
                for i, e, c, t in session.execute(
                    select(n.incident_id, n.event_key, n.channel, n.target)
                    .where(n.incident_id.in_(incident_ids))
                    .where(n.event_key.in_(sorted(set(event_keys))), n.event == "updated")
                )
            }

    def route(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """The row to insert for this would-be update: itself (none waits for its
        target), a `cancelled` row saying it was folded in, or None (routed before)."""
        key = (row["incident_id"], row["channel"], row["target"])
        routed = (row["incident_id"], row["event_key"], row["channel"], row["target"])
        if routed in self._routed:
            return None
        self._routed.add(routed)
        waiting = self._waiting.get(key)
        if waiting is None:
            self._waiting[key] = _Waiting(row=row)
            return row
        folded = {**row, "status": "cancelled", "error": FOLDED}
        if waiting.row is not None:
            waiting.row["details"] = fold(waiting.row["details"], row["details"])
            return folded
        waiting.details = fold(waiting.details, row["details"])
        waiting.extra = fold(waiting.extra, row["details"])
        if waiting.carrier is None:
            waiting.carrier = folded
        return folded

    def store(self, session: Session) -> None:
        """Write what was folded into earlier jobs' rows. If the worker took one
        meanwhile, the first folded row goes out instead, carrying the folded lines."""
        n = NOTIFICATIONS.c
        for item in self._waiting.values():
            if item.stored_id is None or item.carrier is None:
                continue
            changed = session.execute(
                update(NOTIFICATIONS)
                .where(n.id == item.stored_id, n.status == "pending")
                .values(details=item.details)
            )
            if not rowcount(changed):
                item.carrier.update(status="pending", error=None, details=item.extra)
