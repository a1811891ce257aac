"""Twilio's delivery status callbacks, applied to the outbox.

Twilio accepts a message or a call as `queued`; what became of it arrives later, when
Twilio POSTs to the `StatusCallback` URL the channel gave it (incidents.api.twilio_status
checks the signature and calls `apply`). The row keeps Twilio's word in `provider_status`.

A callback changes a row only while it is `sent` and its `provider_id` is the callback's
SID: it must be about the send the row last recorded. Every change is one UPDATE whose
WHERE is that condition, so of two callbacks that race (Twilio retries, duplicates) one
changes the row and the other finds nothing to change. A callback for an earlier send
(the row was retried and sent again under a new SID), a late one (the row was already
requeued or failed) and a duplicate are all answered, and ignored.

Statuses only move forward: `sent` arriving after `delivered` is ignored. A failure
either puts the row back to `pending` with the outbox's backoff, while it has attempts
left (`notify.max_attempts`), or fails it at once and writes one `notification_failed`
timeline entry.

Messages (`MessageStatus` `undelivered` or `failed`, by `ErrorCode`):

| code  | Twilio's meaning                                  | outcome            |
| ----- | ------------------------------------------------- | ------------------ |
| 30001 | queue overflow                                    | retry              |
| 30003 | unreachable destination handset (off, no signal)  | retry              |
| 30008 | unknown error                                     | retry              |
| 30009 | missing segment                                   | retry              |
| 30022 | US A2P 10DLC rate limit exceeded                  | retry              |
| 30002 | account suspended                                 | fail               |
| 30007 | message filtered (spam, carrier violation)        | fail               |
| 30010 | message price exceeds the max price               | fail               |
| 21408 | sending to that region is not enabled             | fail               |
| 30004 | message blocked (by the recipient or carrier)     | fail, unreachable  |
| 30005 | unknown destination handset (not in service)      | fail, unreachable  |
| 30006 | landline or unreachable carrier                   | fail, unreachable  |
| 21211 | 'To' is not a valid phone number                  | fail, unreachable  |
| 21610 | the recipient replied STOP                        | fail, unreachable  |
| 21612 | 'To' cannot be reached by SMS                     | fail, unreachable  |
| 21614 | 'To' is not a mobile number                       | fail, unreachable  |
| other | (or none)                                         | retry              |

`canceled` (someone cancelled it at Twilio) fails without retry. `failed` content
(30007) and account problems fail at once because sending the same text again from the
same account fails the same way; only the unreachable ones say the target cannot be
reached. An unknown code is retried: a page is worth another try, and
`notify.max_attempts` bounds it.

Calls (`CallStatus`): `busy` and `no-answer` are retried (the person may answer the next
call); `canceled` fails; `failed` fails as unreachable for ErrorCode 13224 (invalid or
unsupported number), 21211, 21214 (not reachable), 21215 (region not enabled) or a
`SipResponseCode` of 404, 410, 484 or 604 (no such number), and is retried otherwise.

Success is `sent`, `delivered`, `read` for messages; `in-progress` (answered) and
`completed` for calls; they are stored and nothing else changes. Unknown statuses (Twilio
adds some now and then) are ignored, and logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents import timeline
from incidents.db import rowcount, session_scope, utcnow
from incidents.exceptions import NotFound, Unavailable
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.outbox import backoff
from incidents.notify.twilio_codes import UNREACHABLE
from incidents.notify.unreachable import learn as mark_target
from incidents.vocab import TimelineKind

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    """What a status means for the notification."""

    PROGRESS = "progress"  # on its way, or there: stored
    RETRY = "retry"  # worth another send later
    FAIL = "fail"  # sending again would fail the same way
    UNREACHABLE = "unreachable"  # the target cannot be reached this way


Kind = Literal["message", "call"]

# Progress order: a status never replaces one further along.
MESSAGE_ORDER = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}
CALL_ORDER = {
    "queued": 1,
    "initiated": 2,
    "ringing": 3,
    "in-progress": 4,
    "completed": 5,
    "busy": 5,
    "no-answer": 5,
    "failed": 5,
    "canceled": 5,
}
FAILURES = frozenset({"undelivered", "failed", "canceled", "busy", "no-answer"})

MESSAGE_CODES: dict[int, tuple[Verdict, str]] = {
    30001: (Verdict.RETRY, "queue overflow"),
    30003: (Verdict.RETRY, "unreachable destination handset (switched off or out of coverage)"),
    30008: (Verdict.RETRY, "unknown error"),
    30009: (Verdict.RETRY, "missing segment"),
    30022: (Verdict.RETRY, "A2P 10DLC rate limit exceeded"),
    30002: (Verdict.FAIL, "the Twilio account is suspended"),
    30007: (Verdict.FAIL, "message filtered by the carrier (spam or carrier violation)"),
    30010: (Verdict.FAIL, "message price exceeds the max price"),
    21408: (Verdict.FAIL, "sending to the 'To' number's region is not enabled"),
    30004: (Verdict.UNREACHABLE, "message blocked by the recipient or their carrier"),
    30005: (Verdict.UNREACHABLE, "unknown destination handset (the number is not in service)"),
    21612: (Verdict.UNREACHABLE, "the 'To' number cannot be reached by SMS"),
    # 21211, 21610, 21614, 30006: the same words as when Twilio refuses the send itself.
    **{code: (Verdict.UNREACHABLE, meaning) for code, meaning in UNREACHABLE.items()},
}
CALL_CODES: dict[int, str] = {
    13224: "Twilio cannot call this number or it is invalid",
    21211: "the 'To' number is not a valid phone number",
    21214: "the 'To' number cannot be reached",
    21215: "calling the 'To' number's region is not enabled",
}
# SIP answers that say the number does not exist.
NO_SUCH_NUMBER_SIP = frozenset({404, 410, 484, 604})


@dataclass(frozen=True, slots=True)
class Report:
    """One status callback, as Twilio sent it."""

    kind: Kind
    sid: str
    status: str
    error_code: int | None = None
    sip_response_code: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a report means, and in words."""

    verdict: Verdict
    meaning: str


@dataclass(frozen=True, slots=True)
class Applied:
    """What `apply` did: `stored`, `requeued`, `failed` or `ignored`, and why."""

    action: str
    status: str
    provider_status: str | None
    reason: str


def classify(report: Report) -> Outcome | None:
    """What a status (and its codes) means; None for a status we do not know."""
    order = MESSAGE_ORDER if report.kind == "message" else CALL_ORDER
    if report.status not in order:
        return None
    if report.status not in FAILURES:
        return Outcome(Verdict.PROGRESS, report.status)
    if report.status == "canceled":
        return Outcome(Verdict.FAIL, f"the {report.kind} was cancelled at Twilio")
    if report.kind == "message":
        known = MESSAGE_CODES.get(report.error_code or 0)
        if known is not None:
            return Outcome(*known)
        unknown = "no error code given" if report.error_code is None else "an unknown code"
        return Outcome(Verdict.RETRY, unknown)
    if report.status == "busy":
        return Outcome(Verdict.RETRY, "the line was busy")
    if report.status == "no-answer":
        return Outcome(Verdict.RETRY, "nobody answered")
    if report.error_code in CALL_CODES:
        return Outcome(Verdict.UNREACHABLE, CALL_CODES[report.error_code])
    if report.sip_response_code in NO_SUCH_NUMBER_SIP:
        return Outcome(Verdict.UNREACHABLE, "the number does not exist")
    return Outcome(Verdict.RETRY, "the call failed")


def describe(report: Report, outcome: Outcome) -> str:
    """The error stored on the row: what Twilio reported, with its codes and meaning."""
    codes = ""
    if report.error_code is not None:
        codes += f" code {report.error_code}"
    if report.sip_response_code is not None:
        codes += f" SIP {report.sip_response_code}"
    return f"twilio reported {report.kind} {report.status}{codes}: {outcome.meaning}"


def apply(
    factory: sessionmaker[Session],
    notification_id: int,
    report: Report,
    *,
    max_attempts: int,
) -> Applied:
    """Apply one status callback to its notification (see the module docstring).

    Raises NotFound for an unknown notification, and Unavailable while the row is being
    sent and its new SID is not recorded yet (the callback may be about that send).
    """
    n = NOTIFICATIONS.c
    outcome = classify(report)
    with session_scope(factory) as session:
        row = session.execute(
            select(
                n.id,
                n.incident_id,
                n.channel,
                n.target,
                n.status,
                n.attempts,
                n.provider_id,
                n.provider_status,
            ).where(n.id == notification_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"no notification {notification_id}", field="notification")

        def ignored(reason: str) -> Applied:
            log.info("twilio status for notification %s ignored: %s", row.id, reason)
            return Applied("ignored", row.status, row.provider_status, reason)

        if outcome is None:
            log.warning("unknown twilio %s status %r", report.kind, report.status)
            return ignored(f"unknown {report.kind} status {report.status!r}")
        if row.provider_id != report.sid:
            if row.status == "sending":
                raise Unavailable(
                    f"notification {row.id} is being sent right now and its outcome is not "
                    "recorded yet; retry shortly",
                    retry_after=2,
                )
            current = row.provider_id or "none recorded"
            return ignored(f"{report.sid} is not the notification's current send ({current})")
        if row.status != "sent":
            return ignored(f"the notification is {row.status} already")
        fence = (n.id == row.id, n.status == "sent", n.provider_id == report.sid)
        now = utcnow()
        if outcome.verdict is Verdict.PROGRESS:
            if _rank(report) <= _stored_rank(report.kind, row.provider_status):
                return ignored(f"{report.status} does not move past {row.provider_status}")
            stored = (
                n.provider_status.is_(None)
                if row.provider_status is None
                else n.provider_status == row.provider_status
            )
            changed = session.execute(
                update(NOTIFICATIONS)
                .where(*fence, stored)
                .values(provider_status=report.status, updated_at=now)
            )
            if not rowcount(changed):
                return ignored("another callback changed it first")
            return Applied("stored", "sent", report.status, f"stored {report.status}")
        error = describe(report, outcome)
        values: dict[str, Any] = {
            "provider_status": report.status,
            "error": error,
            "updated_at": now,
            "status": "failed",
        }
        if outcome.verdict is Verdict.RETRY and row.attempts < max_attempts:
            delay = backoff(row.attempts, None)
            values |= {"status": "pending", "not_before": now + timedelta(seconds=delay)}
        changed = session.execute(update(NOTIFICATIONS).where(*fence).values(**values))
        if not rowcount(changed):
            return ignored("another callback handled this send first")
        if values["status"] == "failed":
            _timeline_failure(session, row, report, outcome, error, now)
            log.warning("notification %s failed: %s", row.id, error)
            return Applied("failed", "failed", report.status, error)
        log.info("notification %s requeued: %s", row.id, error)
        return Applied("requeued", "pending", report.status, error)


def _rank(report: Report) -> int:
    order = MESSAGE_ORDER if report.kind == "message" else CALL_ORDER
    return order[report.status]


def _stored_rank(kind: Kind, stored: str | None) -> int:
    # A failure stored on a `sent` row belongs to an earlier send: a failure of the
    # current one would have moved the row to `pending` or `failed`.
    if stored is None or stored in FAILURES:
        return -1
    order = MESSAGE_ORDER if kind == "message" else CALL_ORDER
    return order.get(stored, -1)


def _timeline_failure(
    session: Session, row: Any, report: Report, outcome: Outcome, error: str, now: datetime
) -> None:
    unreachable = outcome.verdict is Verdict.UNREACHABLE
    if unreachable:
        what = "cannot be reached"
    elif outcome.verdict is Verdict.RETRY:
        what = f"failed after {row.attempts} attempt(s)"
    else:
        what = "failed"
    marked = None
    if unreachable:
        marked = mark_target(
            session, row.channel, row.target, report.error_code, row.incident_id, now
        )
    timeline.write(
        session,
        [
            timeline.entry(
                row.incident_id,
                TimelineKind.NOTIFICATION_FAILED,
                f"{row.channel} notification to {row.target} {what}: {error}"
                + (f"; {marked}" if marked else ""),
                at=now,
                data={
                    "notification": row.id,
                    "channel": row.channel,
                    "target": row.target,
                    "unreachable": unreachable,
                    "provider_status": report.status,
                    "error_code": report.error_code,
                },
            )
        ],
    )
