"""Request body schemas of the ingest endpoints, with the checks that name a bad field.

They validate strictly enough to name the offending field and loosely enough to keep
fields that a newer sender adds. The OpenAPI document shows them as they are here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, field_validator

# Alertmanager writes Go's zero time for "no end".
_GO_ZERO_YEAR = 1
# Later times are refused: no sender means them, and the pipeline adds windows to them.
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)

Status = Literal["firing", "resolved"]


def _utc(value: datetime | None) -> datetime | None:
    """UTC, or None for Go's zero time; a time UTC cannot hold is refused, not a 500."""
    if value is None or value.year <= _GO_ZERO_YEAR:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    else:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("time is out of range (after the year 9998 in UTC)") from None
    if value >= _LATEST:
        raise ValueError("time is out of range (after the year 9998 in UTC)")
    return value


# Validated where it is parsed, so that an error names the field it came from.
Timestamp = Annotated[datetime | None, AfterValidator(_utc)]


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    # Label names follow what Alertmanager accepts, since a 4xx makes it drop the whole
    # notification for good: any non-empty UTF-8 name (0.28 takes UTF-8 names, and
    # names starting with "__" pass its validation too). Invalid UTF-8 and lone
    # surrogates never get here (the JSON parser refuses them), and NUL, which no
    # Prometheus produces and PostgreSQL cannot store, is refused for the whole body.
    if not value:
        raise ValueError("an alert needs at least one label")
    if "" in value:
        raise ValueError("label names must not be empty")
    return value


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", str_max_length=65536)


_LABELS = "Label names and values identify the alert; at least one label."
_ANNOTATIONS = "Free text about the alert (summary, description, runbook_url, ...)."
_FINGERPRINT = (
    "The alert's identity. When absent it is computed from the labels as Prometheus and "
    "Alertmanager do (FNV-1a over the sorted label set)."
)


class AMAlert(_Lenient):
    """One alert inside an Alertmanager webhook (payload version 4)."""

    status: Status = Field(description="firing or resolved.")
    labels: dict[str, str] = Field(description=_LABELS)
    annotations: dict[str, str] = Field(default_factory=dict, description=_ANNOTATIONS)
    startsAt: Timestamp = Field(
        description="When the alert started (RFC 3339). Go's zero time means unknown."
    )
    endsAt: Timestamp = Field(
        default=None,
        description="When it ended (RFC 3339); Go's zero time while it fires.",
    )
    generatorURL: str = Field(default="", description="Link to the rule's expression.")
    fingerprint: str | None = Field(
        default=None, min_length=1, max_length=128, description=_FINGERPRINT
    )

    _labels = field_validator("labels")(_check_labels)


_AM_EXAMPLE: Any = {
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "incidents",
    "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": {"alertname": "HighErrorRate", "service": "api-gateway"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.example:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "HighErrorRate",
                "service": "api-gateway",
                "severity": "critical",
            },
            "annotations": {"summary": "5xx rate above 5% for 5 minutes"},
            "startsAt": "2026-11-23T05:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph",
            "fingerprint": "b1a2c3d4e5f60718",
        }
    ],
}


class AMPayload(_Lenient):
    """The Alertmanager webhook body, version 4."""

    model_config = ConfigDict(json_schema_extra={"examples": [_AM_EXAMPLE]})

    version: str = Field(description='Payload version; must be "4".')
    groupKey: str = Field(description="The aggregation group the notification is for.")
    truncatedAlerts: int = Field(
        default=0, ge=0, description="Alerts left out because of the receiver's max_alerts."
    )
    status: Status = Field(description="firing if any alert of the group fires.")
    receiver: str = Field(description="The Alertmanager receiver that sent it.")
    groupLabels: dict[str, str] = Field(
        default_factory=dict, description="The labels the group is formed by."
    )
    commonLabels: dict[str, str] = Field(
        default_factory=dict, description="Labels all alerts of the notification share."
    )
    commonAnnotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations all alerts of the notification share."
    )
    externalURL: str = Field(default="", description="The sending Alertmanager's URL.")
    alerts: list[AMAlert] = Field(description="The alerts of the group.")

    @field_validator("version")
    @classmethod
    def _v4(cls, value: str) -> str:
        if value != "4":
            raise ValueError(f"unsupported webhook version {value!r}; expected '4'")
        return value


_GENERIC_EXAMPLE: Any = {
    "labels": {"alertname": "QueueBacklog", "service": "feedback-service", "severity": "high"},
    "annotations": {"summary": "Queue backlog above 10,000 messages"},
    "status": "firing",
    "startsAt": "2026-11-23T05:00:00Z",
    "generatorURL": "https://monitoring.example/queues",
}

# Each camelCase spelling (as Alertmanager writes it) and the snake_case one.
SPELLINGS = {"startsAt": "starts_at", "endsAt": "ends_at", "generatorURL": "generator_url"}


class GenericAlert(_Lenient):
    """One alert from a source other than Alertmanager.

    Field names are accepted in snake_case or in Alertmanager's camelCase (`startsAt`,
    `endsAt`, `generatorURL`), one spelling per field. Unknown fields are kept.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [_GENERIC_EXAMPLE]})

    labels: dict[str, str] = Field(description=_LABELS)
    annotations: dict[str, str] = Field(default_factory=dict, description=_ANNOTATIONS)
    status: Status = Field(default="firing", description="firing (default) or resolved.")
    starts_at: Timestamp = Field(
        default=None,
        validation_alias=AliasChoices("starts_at", "startsAt"),
        description=(
            "When the alert started (RFC 3339; UTC when no offset). Also `startsAt`. "
            "Default: the time of the first receipt; a resolve without it keeps the "
            "start already stored."
        ),
    )
    ends_at: Timestamp = Field(
        default=None,
        validation_alias=AliasChoices("ends_at", "endsAt"),
        description=(
            "When the alert ended (RFC 3339). Also `endsAt`. Default for a resolved alert: "
            "the time of receipt."
        ),
    )
    generator_url: str = Field(
        default="",
        validation_alias=AliasChoices("generator_url", "generatorURL"),
        description="Link back to the source. Also `generatorURL`.",
    )
    fingerprint: str | None = Field(
        default=None, min_length=1, max_length=128, description=_FINGERPRINT
    )

    _labels = field_validator("labels")(_check_labels)


class GenericEnvelope(_Lenient):
    """`{"alerts": [...]}`, accepted as well as a bare list."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"alerts": [_GENERIC_EXAMPLE]}]})

    alerts: list[GenericAlert] = Field(description="The alerts.")
