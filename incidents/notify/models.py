"""The notification outbox: one row per (incident, event, channel, target), and threads.

The routing stage writes rows in the pipeline's transaction; the notify worker claims
them under a lease, sends, and records the outcome. The unique key means a job that
routes the same event twice (a retry after a crash) adds nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column, Index, Integer, String, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidents.db import JSONType, UTCDateTime


class OutboundNotification(SQLModel, table=True):
    """One notification to send: an incident event for one target of one channel."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("incident_id", "event_key", "channel", "target", name="uq_notifications"),
        # The worker's claim: due rows of one channel, oldest first.
        Index("ix_notifications_due", "status", "channel", "not_before"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(
        sa_column=Column(
            Integer, sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    # What it is about: "entry:<timeline id>" for a paging event, "update:..." for updates.
    event_key: str = Field(sa_column=Column(String(64), nullable=False))
    event: str = Field(sa_column=Column(String(32), nullable=False))
    receiver: str = Field(sa_column=Column(String(255), nullable=False))
    channel: str = Field(sa_column=Column(String(16), nullable=False))
    target: str = Field(sa_column=Column(String(512), nullable=False))
    # pending, sending, sent, failed, cancelled (folded into a merge), bundled (flood limit),
    # unreachable (skipped: the target is marked unreachable, incidents.notify.unreachable)
    status: str = Field(default="pending", sa_column=Column(String(16), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # Not before: the opening hold, or the backoff after a failed attempt.
    not_before: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    claim_token: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    latency_ms: float | None = Field(default=None, sa_column=Column(sa.Float, nullable=True))
    provider_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    details: list[str] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False, server_default="[]")
    )
    # Set just before a provider request and cleared with its outcome: a row that still
    # has it may have been delivered, so the provider is asked before it is sent again.
    send_started_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    # What identifies that request at the provider (for SMS, a digest of the body).
    send_key: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    # The provider's word on delivery after it accepted the request (Twilio callbacks).
    provider_status: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class NotificationThread(SQLModel, table=True):
    """Where an incident's conversation lives on one target (Slack ts, first Message-ID)."""

    __tablename__ = "notification_threads"

    incident_id: int = Field(
        sa_column=Column(
            Integer, sa.ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
        )
    )
    channel: str = Field(sa_column=Column(String(16), primary_key=True))
    target: str = Field(sa_column=Column(String(512), primary_key=True))
    thread: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class UnreachableTarget(SQLModel, table=True):
    """A target its provider said can never be reached this way (an invalid number, a
    landline for SMS): notifications to it are skipped until someone clears the mark.
    A number that said STOP (by reply, or Twilio's 21610) is an SMS opt-out instead
    (incidents.acting.sms_store), which START clears."""

    __tablename__ = "unreachable_targets"

    channel: str = Field(sa_column=Column(String(16), primary_key=True))
    target: str = Field(sa_column=Column(String(512), primary_key=True))
    # The provider's error code (Twilio's 21211, 30006, ...), if it gave one.
    code: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    since: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    # The incident whose notification taught us (kept if that incident is deleted).
    incident_id: int | None = Field(
        default=None,
        sa_column=Column(
            Integer, sa.ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True
        ),
    )


NOTIFICATIONS: Table = OutboundNotification.__table__  # type: ignore[attr-defined]
THREADS: Table = NotificationThread.__table__  # type: ignore[attr-defined]
UNREACHABLE_TARGETS: Table = UnreachableTarget.__table__  # type: ignore[attr-defined]
