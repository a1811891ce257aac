"""Source adapters: turn a request body into normalised alert records.

Each adapter validates strictly enough to name the offending field and loosely enough
to keep fields that a newer sender adds.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from incidents.config import IngestSettings
from incidents.exceptions import BadRequest, ValidationFailed
from incidents.ingest.classify import classify, ignore_reason
from incidents.ingest.fingerprint import content_key, label_fingerprint
from incidents.ingest.schemas import SPELLINGS, AMPayload, GenericAlert, GenericEnvelope

log = logging.getLogger(__name__)

# The width of the derived service column: a longer label value must not fail the write.
_SERVICE_MAX = 255

# What orjson (and so the JSON columns) can write: a 64-bit signed or unsigned integer.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

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
    # False when the sender gave no start: starts_at then only stands in for a new row,
    # and the store keeps the start it already knows.
    start_known: bool = True


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


def _refuse(where: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{where}: {message}", field=where)


def _storable(value: Any, path: str) -> None:
    """Refuse what the JSON columns cannot hold as sent: huge integers, inf and NaN."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise _refuse(path, "integer out of range (at most 64 bits)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(path, "number out of range (not a finite double)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _storable(item, f"{path}[{index}]")


def _extra(model: BaseModel, path: str, spellings: dict[str, str] | None = None) -> dict[str, Any]:
    extra = model.model_extra
    if not extra:
        return {}
    for name in extra:
        if spellings and name in spellings:
            raise _refuse(f"{path}.{name}", f"give either {spellings[name]} or {name}, not both")
    _storable(extra, path)
    return dict(extra)


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
    extra: dict[str, Any],
    now: datetime,
) -> AlertRecord:
    end = ends_at
    if status == "resolved" and end is None:
        end = now
    if starts_at is not None:
        start = starts_at
    elif status == "resolved":
        # Only a new row uses this: the latest its start can have been.
        start = min(end, now) if end is not None else now
    else:
        start = now
    severity, service = classify(labels, settings)
    if service is not None and len(service) > _SERVICE_MAX:
        service = service[:_SERVICE_MAX]  # the labels keep the whole value
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
        extra=extra,
        start_known=starts_at is not None,
        ignored_by=ignore_reason(labels, settings),
    )


Identity = tuple[str, str, dict[str, str], dict[str, str], datetime | None, datetime | None]
_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _identity(record: AlertRecord, start: datetime | None, end: datetime | None) -> Identity:
    """One alert as it was sent (times as given, not as defaulted)."""
    return record.fingerprint, record.status, record.labels, record.annotations, start, end


def _sort_key(identity: Identity) -> tuple[str, str, datetime]:
    return identity[0], identity[1], identity[4] or _NO_TIME


def _find_nul(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else key
            if "\x00" in key:
                return f"{path}.{key!r}" if path else repr(key)
            found = _find_nul(item, inner)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_nul(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _refuse_nul(body: bytes) -> None:
    """Refuse NUL characters by field: PostgreSQL cannot store them in text or JSON.

    The byte search is only a cheap filter: the escaped text `\\\\u0000` matches it too and
    is valid, so the decoded values decide.
    """
    if b"\\u0000" not in body:
        return
    # The standard library's parser, as it takes all the parser above took (NaN, huge
    # numbers) that orjson refuses; this path is rare.
    where = _find_nul(json.loads(body), "")
    if where is not None:
        raise _refuse(where, "NUL characters are not allowed")


def parse_alertmanager(body: bytes, settings: IngestSettings, now: datetime) -> Parsed:
    """Validate an Alertmanager v4 webhook body and normalise its alerts."""
    try:
        payload = AMPayload.model_validate_json(body)
    except ValidationError as exc:
        _raise_for(exc)
        raise  # unreachable: _raise_for always raises
    _refuse_nul(body)
    records = []
    identities = []
    for index, a in enumerate(payload.alerts):
        record = _record(
            settings=settings,
            fingerprint=a.fingerprint,
            status=a.status,
            labels=a.labels,
            annotations=a.annotations,
            starts_at=a.startsAt,
            ends_at=a.endsAt,
            generator_url=a.generatorURL,
            group_key=payload.groupKey,
            extra=_extra(a, f"alerts[{index}]") if a.model_extra else {},
            now=now,
        )
        records.append(record)
        identities.append(_identity(record, a.startsAt, a.endsAt))
    if payload.truncatedAlerts:
        log.warning(
            "Alertmanager left %d alerts out of a notification (its max_alerts); "
            "they were not received",
            payload.truncatedAlerts,
            extra={"receiver": payload.receiver, "group_key": payload.groupKey},
        )
    # externalURL is left out: the two members of an HA pair send the same
    # notification with different URLs, and it must still count once.
    head = ["alertmanager", payload.receiver, payload.groupKey, payload.status]
    key = content_key(head, sorted(identities, key=_sort_key))
    return Parsed(source="alertmanager", alerts=records, dedup_key=key, group_key=payload.groupKey)


def _first_byte(body: bytes) -> int:
    for byte in body:
        if byte not in b" \t\r\n":
            return byte
    return 0


def parse_generic(body: bytes, settings: IngestSettings, now: datetime) -> Parsed:
    """Validate a generic JSON list of alerts (or `{"alerts": [...]}`)."""
    envelope = _first_byte(body) == ord("{")
    try:
        if envelope:
            alerts = GenericEnvelope.model_validate_json(body).alerts
        else:
            alerts = _generic_list.validate_json(body)
    except ValidationError as exc:
        _raise_for(exc)
        raise
    _refuse_nul(body)
    prefix = "alerts" if envelope else ""
    records = []
    identities = []
    for index, alert in enumerate(alerts):
        record = _record(
            settings=settings,
            fingerprint=alert.fingerprint,
            status=alert.status,
            labels=alert.labels,
            annotations=alert.annotations,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            generator_url=alert.generator_url,
            group_key=None,
            extra=_extra(alert, f"{prefix}[{index}]", SPELLINGS) if alert.model_extra else {},
            now=now,
        )
        records.append(record)
        identities.append(_identity(record, alert.starts_at, alert.ends_at))
    key = content_key(["generic"], sorted(identities, key=_sort_key))
    return Parsed(source="generic", alerts=records, dedup_key=key)
