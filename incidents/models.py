"""Database tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, text
from sqlmodel import Field, SQLModel

from incidents.db import JSONType, UTCDateTime


class Alert(SQLModel, table=True):
    """One alert, identified by its fingerprint; its latest known state."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_status_severity", "status", "severity"),
        Index("ix_alerts_service", "service"),
        # Few alerts are ignored: /metrics counts the firing ones without a scan.
        Index(
            "ix_alerts_ignored_status",
            "status",
            postgresql_where=text("ignored_by IS NOT NULL"),
            sqlite_where=text("ignored_by IS NOT NULL"),
        ),
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
    # Why the alert opens no incident and pages no one (`severity="none"`, or the entry of
    # `ingest.ignore_alerts` it matched); None for every other alert. Derived at ingest.
    ignored_by: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


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
    # The running worker renews its lease; once it lapses, a sweep hands the job to
    # another worker under a new token, and the old one can no longer finish it.
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    claim_token: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class ServiceGraphDoc(SQLModel, table=True):
    """The service dependency graph as its owners last saved it (one row)."""

    __tablename__ = "service_graph"

    id: int = Field(default=1, primary_key=True)
    document: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    digest: str = Field(sa_column=Column(String(64), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_by: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    # The digest of the graph that `correlation.graph_file` held when it was last applied.
    file_digest: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class Incident(SQLModel, table=True):
    """A group of related alerts that a human should look at once."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_status_last_alert", "status", "last_alert_at"),
        # Open incidents by severity and their oldest, for /metrics, from the index alone.
        Index("ix_incidents_status_severity_opened", "status", "severity", "opened_at"),
        Index("ix_incidents_escalation_due", "escalation_due_at"),
        Index("ix_incidents_quiet_until", "quiet_until"),
    )

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default="open", sa_column=Column(String(16), nullable=False))
    severity: str = Field(sa_column=Column(String(2), nullable=False))
    title: str = Field(sa_column=Column(Text, nullable=False))
    opened_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    resolved_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # The span of its alerts' start times; the correlation window is measured from it.
    first_alert_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    last_alert_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    services: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    root_cause_candidates: list[str] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    blast_radius: list[str] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    merged_into: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    flapping: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    # Per affected service: first alert start, worst severity and the first alert's name;
    # kept up to date as alerts join, so root cause and title need no scan of the alerts.
    service_stats: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONType, nullable=False, server_default="{}"),
    )
    # Its alerting services that no other of its alerting services lies below (rule v2).
    roots: list[str] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False, server_default="[]")
    )
    # Ranked candidates with why: {service, inferred, reason, explains}.
    root_causes: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False, server_default="[]")
    )
    # What has been paged for it: the severity and when (None: nothing paged yet).
    paged_severity: str | None = Field(default=None, sa_column=Column(String(2), nullable=True))
    paged_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # The lifecycle (vocab.IncidentState): triggered, acknowledged, investigating,
    # identified, monitoring, resolved. `status` says whether it takes alerts.
    state: str = Field(
        default="triggered",
        sa_column=Column(String(16), nullable=False, server_default="triggered"),
    )
    state_changed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    acknowledged_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    acknowledged_by: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    assignee: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    # Monitoring after its alerts resolved: it resolves by itself at this time.
    quiet_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # The escalation policy as frozen when it first paged, and where it stands.
    escalation: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSONType, nullable=True)
    )
    escalation_due_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )


class IncidentService(SQLModel, table=True):
    """Index of open incidents by affected service: correlation looks up only neighbours."""

    __tablename__ = "incident_services"
    __table_args__ = (Index("ix_incident_services_service", "service", "incident_id"),)

    # Links, timeline entries and this index are parts of their incident: deleting it
    # deletes them (nothing deletes incidents today; retention or an operator may).
    incident_id: int = Field(
        sa_column=Column(
            Integer, sa.ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
        )
    )
    service: str = Field(sa_column=Column(String(255), primary_key=True))
    open: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))


class IncidentAlert(SQLModel, table=True):
    """One alert episode inside an incident, with why it joined."""

    __tablename__ = "incident_alerts"
    __table_args__ = (
        Index("ix_incident_alerts_fingerprint", "fingerprint", "incident_id"),
        # Correlation looks up alerts by nearby service and start time.
        Index("ix_incident_alerts_service_starts", "service", "starts_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(
        sa_column=Column(
            Integer,
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    fingerprint: str = Field(sa_column=Column(String(128), nullable=False))
    service: str = Field(sa_column=Column(String(255), nullable=False))
    severity: str = Field(sa_column=Column(String(2), nullable=False))
    starts_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    status: str = Field(default="firing", sa_column=Column(String(16), nullable=False))
    joined_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    joined_because: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )


class TimelineEntry(SQLModel, table=True):
    """Every change to an incident: who, what, when. `pages` marks the events to notify on."""

    __tablename__ = "timeline"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(
        sa_column=Column(
            Integer,
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    actor: str = Field(default="system", sa_column=Column(String(255), nullable=False))
    message: str = Field(sa_column=Column(Text, nullable=False))
    pages: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


class Silence(SQLModel, table=True):
    """A silence (label matchers) or a maintenance window (a service), from start to end."""

    __tablename__ = "silences"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    matchers: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    service: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    starts_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    ends_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))
    created_by: str = Field(sa_column=Column(String(255), nullable=False))
    comment: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expired_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # Last create, update or expiry (Alertmanager's `updatedAt`); empty on rows made before it.
    updated_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


# The predicates of the partial indexes on muted alerts; queries repeat them word for word
# so that both databases can prove the index applies.
SILENCED_SQL = {"postgresql": "silenced_by <> '[]'::jsonb", "sqlite": "silenced_by <> '[]'"}
INHIBITED_SQL = {"postgresql": "inhibited_by <> '[]'::jsonb", "sqlite": "inhibited_by <> '[]'"}


class AlertState(SQLModel, table=True):
    """What the pipeline last made of an alert: muting, flapping and its state changes."""

    __tablename__ = "alert_states"
    __table_args__ = (
        Index(
            "ix_alert_states_silenced",
            "fingerprint",
            postgresql_where=text(SILENCED_SQL["postgresql"]),
            sqlite_where=text(SILENCED_SQL["sqlite"]),
        ),
        Index(
            "ix_alert_states_inhibited",
            "fingerprint",
            postgresql_where=text(INHIBITED_SQL["postgresql"]),
            sqlite_where=text(INHIBITED_SQL["sqlite"]),
        ),
    )

    fingerprint: str = Field(sa_column=Column(String(128), primary_key=True))
    last_status: str = Field(sa_column=Column(String(16), nullable=False))
    last_state_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    transitions: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    flapping: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    silenced_by: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    inhibited_by: list[str] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class IncidentTotal(SQLModel, table=True):
    """How many times incidents were opened, reopened and resolved, counted in the
    transaction that did it: exact, and the same whichever replica reads it."""

    __tablename__ = "incident_totals"

    event: str = Field(sa_column=Column(String(16), primary_key=True))
    count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


# Core table handles, for the batched statements that bypass the ORM on hot paths.
ALERTS: Table = Alert.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]
DELIVERY_KEYS: Table = DeliveryKey.__table__  # type: ignore[attr-defined]
JOBS: Table = PipelineJob.__table__  # type: ignore[attr-defined]
GRAPH_DOCS: Table = ServiceGraphDoc.__table__  # type: ignore[attr-defined]
INCIDENTS: Table = Incident.__table__  # type: ignore[attr-defined]
BY_SERVICE: Table = IncidentService.__table__  # type: ignore[attr-defined]
LINKS: Table = IncidentAlert.__table__  # type: ignore[attr-defined]
TIMELINE: Table = TimelineEntry.__table__  # type: ignore[attr-defined]
SILENCES: Table = Silence.__table__  # type: ignore[attr-defined]
STATES: Table = AlertState.__table__  # type: ignore[attr-defined]
TOTALS: Table = IncidentTotal.__table__  # type: ignore[attr-defined]

# The notification outbox's tables live with the notify package; importing them here
# registers them in the one metadata that migrations and tests compare against.
# So are the SMS reply codes and opt-outs (incidents.acting).
from incidents.acting.models import SMS_CODES, SMS_OPT_OUTS  # noqa: E402, F401
from incidents.apikeys.models import API_KEYS  # noqa: E402, F401
from incidents.notify.models import NOTIFICATIONS, THREADS, UNREACHABLE_TARGETS  # noqa: E402, F401
from incidents.playbooks.models import RUNS, STEPS  # noqa: E402, F401


class ConfigDocument(SQLModel, table=True):
    """A document the API or the config file replaces whole: users, schedules, escalation
    policies, heartbeats (one row per kind)."""

    __tablename__ = "config_documents"

    kind: str = Field(sa_column=Column(String(32), primary_key=True))
    document: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class Heartbeat(SQLModel, table=True):
    """A dead man's switch as it stands: when it was last pinged and when it is missed."""

    __tablename__ = "heartbeats"
    __table_args__ = (Index("ix_heartbeats_expires", "expires_at"),)

    name: str = Field(sa_column=Column(String(128), primary_key=True))
    last_ping_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # waiting (never pinged), alive, expired
    state: str = Field(sa_column=Column(String(16), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


CONFIG_DOCUMENTS: Table = ConfigDocument.__table__  # type: ignore[attr-defined]
HEARTBEATS: Table = Heartbeat.__table__  # type: ignore[attr-defined]
