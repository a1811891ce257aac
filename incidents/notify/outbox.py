"""The notify worker's side of the outbox: claim due notifications, record how they went.

A claim takes due rows of ONE channel under a lease with a fresh token, in its own short
transaction, so a slow or failing channel never holds up another's rows. The send
happens outside any transaction; recording its outcome is fenced by the token, so a
worker whose lease lapsed (it hung, or was killed and its row handed on) cannot
overwrite what its successor recorded.

Before each provider request the worker commits `send_started_at` (and the channel's
`send_key`); the outcome clears them. A row that still has them when it is claimed again
(its worker was killed mid-send, or the request timed out) may have been delivered: the
worker asks the provider (`Reconciler.find`) and sends only if the provider has nothing.

A failed send goes back to `pending` with exponential backoff and jitter (at least what
the provider's Retry-After asked for) until `max_attempts`; then it is `failed`, and the
incident's timeline says so, as it does at once for a target that cannot be reached.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents import timeline
from incidents.acting import sms_store
from incidents.db import rowcount, session_scope, utcnow
from incidents.models import INCIDENTS
from incidents.notify import unreachable
from incidents.notify.base import Notification, SendResult
from incidents.notify.models import NOTIFICATIONS, THREADS
from incidents.vocab import TimelineKind

# Backoff: 2 s, 4 s, 8 s ... capped, each with up to 25 % jitter.
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Claimed:
    """A notification this worker holds the lease on."""

    id: int
    incident_id: int
    event: str
    channel: str
    target: str
    receiver: str
    attempts: int
    token: str
    due_at: datetime
    details: tuple[str, ...] = field(default_factory=tuple)
    # Set when an earlier attempt may have reached the provider (see the docstring).
    send_started_at: datetime | None = None
    send_key: str | None = None


def _due(channel: Any, now: datetime) -> Any:
    n = NOTIFICATIONS.c
    return and_(
        channel,
        or_(
            and_(n.status == "pending", n.not_before <= now),
            # Its worker died while sending: hand it on (see the module docstring).
            and_(n.status == "sending", n.lease_until < now),
        ),
    )


def due_channels(factory: sessionmaker[Session]) -> list[str]:
    """The channels that have notifications due now (for the sweep)."""
    n = NOTIFICATIONS.c
    with session_scope(factory) as session:
        found = session.scalars(
            select(n.channel).where(_due(n.channel.is_not(None), utcnow())).distinct()
        )
        return sorted(found)


def has_due(
    factory: sessionmaker[Session],
    channel: str,
    skip_targets: Sequence[str] = (),
    skip_updates: bool = False,
) -> bool:
    """Whether `channel` has a notification due now (that `claim` would take, with the
    same skips)."""
    n = NOTIFICATIONS.c
    due = _skipping(_due(n.channel == channel, utcnow()), skip_targets, skip_updates)
    with session_scope(factory) as session:
        return session.scalar(select(n.id).where(due).limit(1)) is not None


def _skipping(due: Any, skip_targets: Sequence[str], skip_updates: bool) -> Any:
    n = NOTIFICATIONS.c
    if skip_targets:
        due = and_(due, n.target.not_in(list(skip_targets)))
    if skip_updates:
        due = and_(due, n.event != "updated")
    return due


def claim(
    factory: sessionmaker[Session],
    channel: str,
    *,
    limit: int = 20,
    lease: timedelta = timedelta(seconds=60),
    skip_targets: Sequence[str] = (),
    skip_updates: bool = False,
) -> list[Claimed]:
    """Take up to `limit` due notifications of one channel, oldest due first; none for
    `skip_targets`, nor edits (`updated`) with `skip_updates` (their provider's slot is
    taken: they stay queued, in order, rather than be claimed and put back)."""
    now = utcnow()
    token = uuid.uuid4().hex
    n = NOTIFICATIONS.c
    due = _skipping(_due(n.channel == channel, now), skip_targets, skip_updates)
    with session_scope(factory) as session:
        pick = select(n.id).where(due).order_by(n.not_before, n.id).limit(limit)
        if session.get_bind().dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        ids = list(session.scalars(pick))
        if not ids:
            return []
        rows = session.execute(
            update(NOTIFICATIONS)
            .where(n.id.in_(ids))
            .where(due)
            .values(
                status="sending",
                claim_token=token,
                lease_until=now + lease,
                attempts=n.attempts + 1,
                updated_at=now,
            )
            .returning(
                n.id,
                n.incident_id,
                n.event,
                n.channel,
                n.target,
                n.receiver,
                n.attempts,
                n.not_before,
                n.created_at,
                n.details,
                n.send_started_at,
                n.send_key,
            )
        ).all()
        rows = unreachable.skip(session, channel, rows, now)
    return sorted(
        (
            Claimed(
                id=r.id,
                incident_id=r.incident_id,
                event=r.event,
                channel=r.channel,
                target=r.target,
                receiver=r.receiver,
                attempts=r.attempts,
                token=token,
                due_at=max(r.not_before, r.created_at),
                details=tuple(r.details or ()),
                send_started_at=r.send_started_at,
                send_key=r.send_key,
            )
            for r in rows
        ),
        key=lambda c: (c.due_at, c.id),
    )


def render(factory: sessionmaker[Session], item: Claimed, public_url: str) -> Notification:
    """The notification for a claimed row, from the incident as it is now."""
    with session_scope(factory) as session:
        incident = session.execute(
            select(INCIDENTS).where(INCIDENTS.c.id == item.incident_id)
        ).one()
        thread = session.scalar(
            select(THREADS.c.thread).where(
                THREADS.c.incident_id == item.incident_id,
                THREADS.c.channel == item.channel,
                THREADS.c.target == item.target,
            )
        )
        reply_code, opted_out = None, False
        if item.channel == "sms":
            opted_out = sms_store.opted_out(session, item.target)
            if not opted_out and item.event not in ("resolved", "summary"):
                reply_code = sms_store.allocate(session, item.target, item.incident_id, utcnow())
    causes: list[dict[str, Any]] = list(incident.root_causes or [])
    first = causes[0] if causes else None
    return Notification(
        delivery_id=item.id,
        incident_id=item.incident_id,
        event=item.event,
        severity=incident.severity,
        # What people see: the lifecycle state (triggered, acknowledged, ...), or merged.
        status=incident.status if incident.status == "merged" else incident.state,
        title=incident.title,
        services=tuple(incident.services or ()),
        root_cause=first["service"] if first else None,
        root_reason=first["reason"] if first else None,
        blast_radius=tuple(incident.blast_radius or ()),
        url=f"{public_url.rstrip('/')}/api/v1/incidents/{item.incident_id}",
        target=item.target,
        thread=dict(thread or {}),
        details=item.details,
        reply_code=reply_code,
        opted_out=opted_out,
        receiver=item.receiver,
    )


def backoff(attempts: int, retry_after: float | None) -> float:
    """Seconds before the next attempt: exponential with jitter, never under Retry-After."""
    wait = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    wait *= 1 + random.random() * 0.25  # jitter, not a secret
    return float(max(wait, retry_after or 0.0))


def mark_started(factory: sessionmaker[Session], item: Claimed, key: str | None) -> bool:
    """Commit that a provider request is about to be made; False if the lease was lost."""
    n = NOTIFICATIONS.c
    with session_scope(factory) as session:
        changed = session.execute(
            update(NOTIFICATIONS)
            .where(n.id == item.id, n.claim_token == item.token)
            .values(send_started_at=utcnow(), send_key=key)
        )
        return bool(rowcount(changed))


def record(
    factory: sessionmaker[Session],
    item: Claimed,
    result: SendResult,
    *,
    max_attempts: int,
) -> str:
    """Store the outcome of one send; return the row's new status ('lost' if another
    worker holds it now)."""
    now = utcnow()
    n = NOTIFICATIONS.c
    values: dict[str, Any] = {"updated_at": now, "lease_until": None, "claim_token": None}
    if not result.in_doubt:
        # The outcome is known: nothing to look up before the next attempt.
        values |= {"send_started_at": None, "send_key": None}
    if result.ok:
        values |= {
            "status": "sent",
            "sent_at": now,
            "latency_ms": round((now - item.due_at).total_seconds() * 1000, 1),
            "provider_id": result.provider_id,
            "error": None,
        }
    elif result.retryable and item.attempts < max_attempts:
        delay = backoff(item.attempts, result.retry_after)
        values |= {"status": "pending", "not_before": now + timedelta(seconds=delay)}
        values["error"] = result.error
    else:
        values |= {"status": "failed", "error": result.error}
    with session_scope(factory) as session:
        changed = rowcount(
            session.execute(
                update(NOTIFICATIONS)
                .where(n.id == item.id, n.claim_token == item.token)
                .values(**values)
            )
        )
        if not changed:
            return "lost"
        if result.ok and result.thread:
            _keep_thread(session, item, result.thread, now)
        if values["status"] == "failed":
            why = "cannot be reached" if result.target_unreachable else "failed"
            marked = None
            if result.target_unreachable:
                marked = unreachable.learn(
                    session, item.channel, item.target, result.error_code, item.incident_id, now
                )
            timeline.write(
                session,
                [
                    timeline.entry(
                        item.incident_id,
                        TimelineKind.NOTIFICATION_FAILED,
                        f"{item.channel} notification to {item.target} {why} after "
                        f"{item.attempts} attempt(s): {result.error}"
                        + (f"; {marked}" if marked else ""),
                        at=now,
                        data={
                            "notification": item.id,
                            "channel": item.channel,
                            "target": item.target,
                            "unreachable": result.target_unreachable,
                            "marked": marked is not None,
                        },
                    )
                ],
            )
    return str(values["status"])


def cancel_scheduled(
    session: Session, incident_id: int, key_prefix: str, why: str, now: datetime
) -> int:
    """Drop an incident's notifications of one kind still waiting to go out (an
    escalation's later steps, once someone acknowledged); return how many."""
    n = NOTIFICATIONS.c
    return rowcount(
        session.execute(
            update(NOTIFICATIONS)
            .where(n.incident_id == incident_id)
            .where(n.event_key.like(f"{key_prefix}%"))
            .where(n.status == "pending")
            .values(status="cancelled", error=why, updated_at=now)
        )
    )


def supersede(factory: sessionmaker[Session], item: Claimed, why: str) -> None:
    """Drop a claimed notification that another one covers (never sent)."""
    n = NOTIFICATIONS.c
    with session_scope(factory) as session:
        session.execute(
            update(NOTIFICATIONS)
            .where(n.id == item.id, n.claim_token == item.token)
            .values(
                status="cancelled",
                error=why,
                lease_until=None,
                claim_token=None,
                updated_at=utcnow(),
            )
        )


def _keep_thread(session: Session, item: Claimed, thread: dict[str, str], now: datetime) -> None:
    t = THREADS.c
    key = (t.incident_id == item.incident_id, t.channel == item.channel, t.target == item.target)
    if rowcount(session.execute(update(THREADS).where(*key).values(thread=thread, updated_at=now))):
        return
    session.execute(
        THREADS.insert().values(
            incident_id=item.incident_id,
            channel=item.channel,
            target=item.target,
            thread=thread,
            updated_at=now,
        )
    )
