"""Database tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from incidents.db import JSONType, UTCDateTime


class Alert(SQLModel, table=True):
    """One alert, identified by its fingerprint; its latest known state."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_status_severity", "status", "severity"),
        Index("ix_alerts_service", "service"),
    )

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(sa_column=Column(String(128), nullable=False, unique=True))
    source: str = Field(sa_column=Column(String(32), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    annotations: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    starts_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    ends_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # The event time of the state we hold: starts_at while firing, ends_at once resolved.
    # A delivery whose state time is older than this one never overwrites it.
    state_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    generator_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    group_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    severity: str = Field(sa_column=Column(String(2), nullable=False))
    service: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    first_received: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    last_received: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    receive_count: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    # Fields a newer sender added that we do not model yet; kept, not dropped.
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


class WebhookDelivery(SQLModel, table=True):
    """Every request body that was accepted, exactly as it arrived."""

    __tablename__ = "webhook_deliveries"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(sa_column=Column(String(32), nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))
    dedup_key: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    duplicate: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    alert_count: int = Field(sa_column=Column(Integer, nullable=False))
    request_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    group_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    body: str = Field(sa_column=Column(Text, nullable=False))


class DeliveryKey(SQLModel, table=True):
    """The content key of recent deliveries, so a retried or HA-duplicated one counts once."""

    __tablename__ = "delivery_keys"

    key: str = Field(sa_column=Column(String(64), primary_key=True))
    seen_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))


class PipelineJob(SQLModel, table=True):
    """Work written in the same transaction as the alerts: the pipeline's outbox."""

    __tablename__ = "pipeline_jobs"
    __table_args__ = (Index("ix_pipeline_jobs_status_created", "status", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    fingerprints: list[str] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    status: str = Field(default="pending", sa_column=Column(String(16), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    claimed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
