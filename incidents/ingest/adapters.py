"""Source adapters: turn a request body into normalised alert records.

Each adapter validates strictly enough to name the offending field and loosely enough
to keep fields that a newer sender adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from incidents.config import IngestSettings
from incidents.exceptions import BadRequest, ValidationFailed
from incidents.ingest.classify import classify, ignore_reason
from incidents.ingest.fingerprint import content_key, label_fingerprint

# Alertmanager writes Go's zero time for "no end".
_GO_ZERO_YEAR = 1

Status = Literal["firing", "resolved"]


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.year <= _GO_ZERO_YEAR:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    if not value:
        raise ValueError("an alert needs at least one label")
    for name in value:
        if not name:
            raise ValueError("label names must not be empty")
    return value


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", str_max_length=65536)


class AMAlert(_Lenient):
    """One alert inside an Alertmanager webhook (payload version 4)."""

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str | None = Field(default=None, min_length=1, max_length=128)

    _labels = field_validator("labels")(_check_labels)


class AMPayload(_Lenient):
    """The Alertmanager webhook body, version 4."""

    version: str
    groupKey: str
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Status
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AMAlert]

    @field_validator("version")
    @classmethod
    def _v4(cls, value: str) -> str:
        if value != "4":
            raise ValueError(f"unsupported webhook version {value!r}; expected '4'")
        return value


class GenericAlert(_Lenient):
    """One alert from a source other than Alertmanager."""

    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Status = "firing"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str = ""
    fingerprint: str | None = Field(default=None, min_length=1, max_length=128)

    _labels = field_validator("labels")(_check_labels)


class GenericEnvelope(_Lenient):
    """`{"alerts": [...]}`, accepted as well as a bare list."""

    alerts: list[GenericAlert]


_generic_list = TypeAdapter(list[GenericAlert])


@dataclass(slots=True)
class AlertRecord:
    """An alert as the store writes it."""

    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    state_at: datetime
    generator_url: str | None
    group_key: str | None
    severity: str
    service: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    ignored_by: str | None = None

    def identity(self) -> tuple[Any, ...]:
        """What makes two deliveries of this alert the same delivery."""
        return (
            self.fingerprint,
            self.status,
            self.labels,
            self.annotations,
            self.starts_at.isoformat(),
            self.ends_at.isoformat() if self.ends_at else None,
        )


@dataclass(slots=True)
class Parsed:
    """A validated request body."""

    source: str
    alerts: list[AlertRecord]
    dedup_key: str
    group_key: str | None = None


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _raise_for(exc: ValidationError) -> None:
    errors = exc.errors(include_url=False, include_input=False)
    for err in errors:
        if err["type"] == "json_invalid":
            raise BadRequest(f"body is not valid JSON: {err['msg']}", field="body") from None
    details = [{"field": _field_path(e["loc"]), "message": e["msg"]} for e in errors[:20]]
    first = details[0]
    raise ValidationFailed(
        f"{first['field']}: {first['message']}", field=first["field"], errors=details
    ) from None


def _state_at(status: str, starts_at: datetime, ends_at: datetime | None) -> datetime:
    if status == "resolved" and ends_at is not None:
        return ends_at
    return starts_at


def _record(
    *,
    settings: IngestSettings,
    fingerprint: str | None,
    status: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    starts_at: datetime | None,
    ends_at: datetime | None,
    generator_url: str,
    group_key: str | None,
    extra: dict[str, Any] | None,
    now: datetime,
) -> AlertRecord:
    start = _utc(starts_at) or now
    end = _utc(ends_at)
    if status == "resolved" and end is None:
        end = now
    severity, service = classify(labels, settings)
    return AlertRecord(
        fingerprint=fingerprint or label_fingerprint(labels),
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=start,
        ends_at=end,
        state_at=_state_at(status, start, end),
        generator_url=generator_url or None,
        group_key=group_key,
        severity=severity,
        service=service,
        extra=extra or {},
        ignored_by=ignore_reason(labels, settings),
    )


def parse_alertmanager(body: bytes, settings: IngestSettings, now: datetime) -> Parsed:
    """Validate an Alertmanager v4 webhook body and normalise its alerts."""
    try:
        payload = AMPayload.model_validate_json(body)
    except ValidationError as exc:
        _raise_for(exc)
        raise  # unreachable: _raise_for always raises
    records = [
        _record(
            settings=settings,
            fingerprint=a.fingerprint,
            status=a.status,
            labels=a.labels,
            annotations=a.annotations,
            starts_at=a.startsAt,
            ends_at=a.endsAt,
            generator_url=a.generatorURL,
            group_key=payload.groupKey,
            extra=dict(a.model_extra or {}),
            now=now,
        )
        for a in payload.alerts
    ]
    # externalURL is left out: the two members of an HA pair send the same
    # notification with different URLs, and it must still count once.
    key = content_key(
        [
            "alertmanager",
            payload.receiver,
            payload.groupKey,
            payload.status,
            sorted((r.identity() for r in records), key=lambda i: (i[0], i[1], i[4])),
        ]
    )
    return Parsed(source="alertmanager", alerts=records, dedup_key=key, group_key=payload.groupKey)


def parse_generic(body: bytes, settings: IngestSettings, now: datetime) -> Parsed:
    """Validate a generic JSON list of alerts (or `{"alerts": [...]}`)."""
    stripped = body.lstrip()
    try:
        if stripped.startswith(b"{"):
            alerts = GenericEnvelope.model_validate_json(body).alerts
        else:
            alerts = _generic_list.validate_json(body)
    except ValidationError as exc:
        _raise_for(exc)
        raise
    records = []
    identities = []
    for alert in alerts:
        records.append(
            _record(
                settings=settings,
                fingerprint=alert.fingerprint,
                status=alert.status,
                labels=alert.labels,
                annotations=alert.annotations,
                # Without a start time a re-sent alert must keep one identity, so the
                # first receipt stands in; the store keeps the earliest.
                starts_at=alert.starts_at,
                ends_at=alert.ends_at,
                generator_url=alert.generator_url,
                group_key=None,
                extra=dict(alert.model_extra or {}),
                now=now,
            )
        )
        record = records[-1]
        identities.append(
            (
                record.fingerprint,
                record.status,
                record.labels,
                record.annotations,
                alert.starts_at.isoformat() if alert.starts_at else None,
                alert.ends_at.isoformat() if alert.ends_at else None,
            )
        )
    key = content_key(["generic", sorted(identities, key=str)])
    return Parsed(source="generic", alerts=records, dedup_key=key)
