"""Targets that cannot be reached, remembered so the next incident does not try them again.

When Twilio refuses a number for good, at send time or in a delivery callback, the
target is marked, in the caller's transaction:

- 21610 (the recipient replied STOP to our number) is an SMS opt-out, the same one an
  inbound STOP writes (incidents.acting.sms_store): a START reply clears it.
- 21211 (not a valid number), 21614 (not a mobile number) and 30006 (a landline) mark
  the (channel, target) in `unreachable_targets`, with the code, the reason and the
  incident that taught us. `DELETE /api/v1/unreachable-targets/{channel}/{target}` clears it.

The notify worker's claim skips a marked target's notifications: each becomes
`unreachable` with the reason, and the incident's timeline says so once per target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from incidents import timeline
from incidents.acting import sms_store
from incidents.acting.models import SMS_OPT_OUTS
from incidents.notify.models import NOTIFICATIONS, UNREACHABLE_TARGETS
from incidents.notify.twilio_codes import UNREACHABLE
from incidents.vocab import TimelineKind

# Twilio's code for a number that replied STOP: an opt-out, not a mark.
OPTED_OUT = 21610
# The codes that mark a target (every permanent Twilio refusal but the opt-out).
MARKING = frozenset(UNREACHABLE) - {OPTED_OUT}
# Channels whose targets are phone numbers (stored as sms_store.normal writes them).
PHONE_CHANNELS = frozenset({"sms", "voice"})
# What an opt-out learned from Twilio is stored as (the opt-out table keeps the word).
OPTED_OUT_WORD = "TWILIO 21610"


@dataclass(frozen=True, slots=True)
class Mark:
    """Why a target is skipped, and since when."""

    channel: str
    target: str
    code: int | None
    reason: str
    since: datetime
    incident_id: int | None
    # An SMS opt-out (STOP or 21610): cleared by START.
    opted_out: bool = False

    def describe(self) -> str:
        """The reason, for a skipped notification's error and the timeline."""
        when = self.since.strftime("%Y-%m-%d %H:%M UTC")
        if self.opted_out:
            return (
                f"{self.target} opted out of SMS since {when} ({self.reason}); nothing is "
                "texted to it until it replies START"
            )
        code = f"{self.code}: " if self.code is not None else ""
        return (
            f"{self.target} is marked unreachable by {self.channel} since {when} "
            f"({code}{self.reason}); clear the mark with DELETE "
            f"/api/v1/unreachable-targets/{self.channel}/{self.target}"
        )


def stored_target(channel: str, target: str) -> str:
    """The target as marks are keyed: phone numbers without spaces or dashes."""
    return sms_store.normal(target) if channel in PHONE_CHANNELS else target


def learn(
    session: Session,
    channel: str,
    target: str,
    code: int | None,
    incident_id: int | None,
    now: datetime,
) -> str | None:
    """Remember that a provider refused `target` for good with `code`; return what
    the incident's timeline should add, or None when the code marks nothing."""
    if channel == "sms" and code == OPTED_OUT:
        sms_store.opt_out(session, target, OPTED_OUT_WORD, now)
        return "it is opted out: nothing more is texted to it until it replies START"
    if channel not in PHONE_CHANNELS or code not in MARKING:
        return None
    key = stored_target(channel, target)
    u = UNREACHABLE_TARGETS.c
    session.execute(delete(UNREACHABLE_TARGETS).where(u.channel == channel, u.target == key))
    session.execute(
        insert(UNREACHABLE_TARGETS).values(
            channel=channel,
            target=key,
            code=code,
            reason=UNREACHABLE[code],
            since=now,
            incident_id=incident_id,
        )
    )
    return (
        f"it is marked unreachable: later {channel} notifications to it are skipped until "
        f"the mark is cleared (DELETE /api/v1/unreachable-targets/{channel}/{key})"
    )


def marks_for(session: Session, channel: str, targets: set[str]) -> dict[str, Mark]:
    """The marks (and for SMS, opt-outs) of these targets of one channel, by target as given."""
    if not targets:
        return {}
    keyed = {stored_target(channel, t): t for t in targets}
    u = UNREACHABLE_TARGETS.c
    found: dict[str, Mark] = {}
    for row in session.execute(
        select(UNREACHABLE_TARGETS).where(u.channel == channel, u.target.in_(list(keyed)))
    ).mappings():
        found[keyed[row["target"]]] = _mark(row)
    if channel == "sms":
        o = SMS_OPT_OUTS.c
        for row in session.execute(select(SMS_OPT_OUTS).where(o.phone.in_(list(keyed)))).mappings():
            found.setdefault(keyed[row["phone"]], _opt_out(row))
    return found


def skip(session: Session, channel: str, rows: Sequence[Any], now: datetime) -> list[Any]:
    """Of claimed rows, those whose target is not marked unreachable (or opted out); the
    others become `unreachable`, unsent, and the incident's timeline says so once per
    target ."""
    if channel not in PHONE_CHANNELS:
        return list(rows)  # only phone numbers are marked
    marks = marks_for(session, channel, {r.target for r in rows})
    if not marks:
        return list(rows)
    n = NOTIFICATIONS.c
    skipped = [r for r in rows if r.target in marks]
    for row in skipped:
        mark = marks[row.target]
        said_before = session.scalar(
            select(n.id)
            .where(n.incident_id == row.incident_id, n.channel == channel)
            .where(n.target == row.target, n.status == "unreachable")
            .limit(1)
        )
        session.execute(
            update(NOTIFICATIONS)
            .where(n.id == row.id)
            .values(
                status="unreachable",
                error=mark.describe(),
                attempts=n.attempts - 1,  # nothing was tried
                lease_until=None,
                claim_token=None,
                send_started_at=None,
                send_key=None,
                updated_at=now,
            )
        )
        if said_before is None:
            timeline.write(
                session,
                [
                    timeline.entry(
                        row.incident_id,
                        TimelineKind.NOTIFICATION_FAILED,
                        f"{channel} notifications to {row.target} are skipped: {mark.describe()}",
                        at=now,
                        data={
                            "notification": row.id,
                            "channel": channel,
                            "target": row.target,
                            "unreachable": True,
                            "skipped": True,
                            "code": mark.code,
                        },
                    )
                ],
            )
    return [r for r in rows if r.target not in marks]


def listing(session: Session) -> list[Mark]:
    """Every marked target and SMS opt-out, oldest first."""
    marks = [_mark(row) for row in session.execute(select(UNREACHABLE_TARGETS)).mappings()]
    marks += [_opt_out(row) for row in session.execute(select(SMS_OPT_OUTS)).mappings()]
    return sorted(marks, key=lambda m: (m.since, m.channel, m.target))


def clear(session: Session, channel: str, target: str) -> bool:
    """Send to this target again; True if it was marked (or, for SMS, opted out)."""
    key = stored_target(channel, target)
    u = UNREACHABLE_TARGETS.c
    gone = session.execute(delete(UNREACHABLE_TARGETS).where(u.channel == channel, u.target == key))
    cleared = bool(getattr(gone, "rowcount", 0))
    if channel == "sms":
        cleared = sms_store.opt_in(session, key) or cleared
    return cleared


def _mark(row: Any) -> Mark:
    return Mark(
        channel=row["channel"],
        target=row["target"],
        code=row["code"],
        reason=row["reason"],
        since=row["since"],
        incident_id=row["incident_id"],
    )


def _opt_out(row: Any) -> Mark:
    word = str(row["word"])
    code = OPTED_OUT if word == OPTED_OUT_WORD else None
    reason = UNREACHABLE[OPTED_OUT] if code else f"it replied {word}"
    return Mark(
        channel="sms",
        target=row["phone"],
        code=code,
        reason=reason,
        since=row["opted_out_at"],
        incident_id=None,
        opted_out=True,
    )
