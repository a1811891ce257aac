"""Silences and maintenance windows: create, list, read, expire."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from incidents.api.queries import silences as queries
from incidents.apikeys.scopes import INCIDENTS_READ, INCIDENTS_WRITE
from incidents.correlation.store import current_graph
from incidents.db import utcnow
from incidents.exceptions import NotFound, ValidationFailed
from incidents.models import Silence
from incidents.routing.matchers import Matcher, parse_matchers

from .deps import check_token, db_session
from .params import strict_params
from .principal import current, require

router = APIRouter(
    prefix="/api/v1/silences",
    tags=["silences"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)

State = Literal["pending", "active", "expired"]


# Later times are refused: the storage and the windows computed from them stop at 9999.
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _zoned(value: datetime) -> datetime:
    # A silence's window must not depend on the clock of the machine that typed it.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "needs a time zone, e.g. 2030-01-01T00:00:00Z or 2030-01-01T02:00:00+02:00; "
            "a time without one is not taken as UTC"
        )
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range: UTC cannot hold it") from None
    if utc >= _LATEST:
        raise ValueError("is out of range: after the year 9998 in UTC")
    return value


ZonedDatetime = Annotated[datetime, AfterValidator(_zoned)]


class SilenceIn(BaseModel):
    """A new silence (matchers) or maintenance window (service), or both."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[str] | str = Field(
        default_factory=list,
        description="Alertmanager matchers, e.g. 'alertname=\"DiskFull\"' (regexes are RE2)",
    )
    service: str | None = Field(
        default=None,
        description="A service from the graph: a maintenance window that mutes its alerts",
    )
    starts_at: ZonedDatetime | None = Field(
        default=None, description="RFC 3339 with a time zone; default now"
    )
    ends_at: ZonedDatetime = Field(description="RFC 3339 with a time zone")
    created_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Who made it: honoured for an admin key (a bot acting for a person); "
        "otherwise the key's owner, else `key:<name>`, is recorded",
    )
    comment: str = Field(min_length=1, max_length=10000, description="Why it exists")


class SilenceOut(BaseModel):
    """A silence as the API shows it."""

    id: str = Field(description="The silence's id (a UUID), shared with the v2 API")
    state: Literal["pending", "active", "expired"] = Field(
        description="pending before starts_at, active until ends_at, then expired"
    )
    matchers: list[str] = Field(description="Its matchers, as Alertmanager prints them")
    service: str | None = Field(description="The service of a maintenance window, or null")
    starts_at: datetime = Field(description="When it starts muting (UTC)")
    ends_at: datetime = Field(description="When it stops muting (UTC); now once expired")
    created_by: str = Field(description="Who made it")
    comment: str = Field(description="Why it exists")
    created_at: datetime = Field(description="When it was created (UTC)")


def silence_state(row: Silence, now: datetime) -> State:
    """Pending, active or expired at `now`."""
    if row.ends_at <= now:
        return "expired"
    return "pending" if row.starts_at > now else "active"


def check_matchers(every: list[Matcher], service: str | None, field: str = "matchers") -> None:
    """Refuse a silence that selects nothing, or everything (as Alertmanager does)."""
    if every and service is None and all(m.matches({}) for m in every):
        raise ValidationFailed(
            f"{field}: every matcher also matches an empty label set, so the silence would "
            "mute everything; add one that selects something",
            field=field,
        )
    if not every and service is None:
        raise ValidationFailed(
            f"{field}: give at least one matcher, or a service for a maintenance window",
            field=field,
        )


def check_window(
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    names: tuple[str, str] = ("starts_at", "ends_at"),
) -> None:
    """A silence must end after it starts, and in the future."""
    start, field = names
    if ends_at <= starts_at:
        raise ValidationFailed(f"{field}: must be after {start}", field=field)
    if ends_at <= now:
        raise ValidationFailed(f"{field}: must be in the future", field=field)


def expire(row: Silence, now: datetime) -> None:
    """End the silence now, as Alertmanager does: a pending one starts and ends now."""
    if row.ends_at > now:
        row.starts_at = min(row.starts_at, now)
        row.ends_at = now
        row.expired_at = now
        row.updated_at = now


def find_silence(session: Session, silence_id: str) -> Silence:
    """The silence with this id, or 404."""
    row = queries.get_silence(session, silence_id=silence_id)
    if row is None:
        raise NotFound(f"no silence {silence_id!r}", field="silence_id")
    return row


def _out(row: Silence, now: datetime) -> SilenceOut:
    return SilenceOut(
        id=row.id,
        state=silence_state(row, now),
        matchers=list(row.matchers),
        service=row.service,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
        created_at=row.created_at,
    )


@router.post(
    "",
    response_model=SilenceOut,
    status_code=201,
    summary="Create a silence",
    dependencies=[require(INCIDENTS_WRITE)],
)
def create_silence(
    body: SilenceIn, request: Request, session: Annotated[Session, Depends(db_session)]
) -> SilenceOut:
    """Mute matching alerts (and, with `service`, every alert of that service) for a time."""
    now = utcnow()
    texts = [body.matchers] if isinstance(body.matchers, str) else list(body.matchers)
    normalised: list[str] = []
    every: list[Matcher] = []
    for index, text in enumerate(texts):
        parsed = parse_matchers(text, where=f"matchers[{index}]")
        normalised.extend(str(m) for m in parsed)
        every.extend(parsed)
    check_matchers(every, body.service)
    starts_at = body.starts_at or now
    ends_at = body.ends_at
    check_window(starts_at, ends_at, now)
    if body.service is not None and body.service not in current_graph(session):
        raise ValidationFailed(
            f"service: {body.service!r} is not in the service graph", field="service"
        )
    row = Silence(
        id=str(uuid.uuid4()),
        matchers=normalised,
        service=body.service,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=current(request).acting_as(body.created_by),
        comment=body.comment,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.commit()
    return _out(row, now)


@router.get(
    "",
    response_model=list[SilenceOut],
    summary="List silences",
    dependencies=[require(INCIDENTS_READ)],
)
def list_silences(
    session: Annotated[Session, Depends(db_session)],
    state: Literal["active", "pending", "expired", "all"] | None = None,
) -> list[SilenceOut]:
    """Silences, newest first; without `state`, those not yet expired."""
    now = utcnow()
    ended = None if state == "all" else state == "expired"
    found = queries.list_silences(session, ended=ended, now=now, limit=1000)
    rows = [_out(r, now) for r in found]
    if state in ("active", "pending"):
        rows = [r for r in rows if r.state == state]
    return rows


@router.get(
    "/{silence_id}",
    response_model=SilenceOut,
    summary="One silence",
    dependencies=[require(INCIDENTS_READ)],
)
def get_silence(silence_id: str, session: Annotated[Session, Depends(db_session)]) -> SilenceOut:
    """The silence with this id."""
    return _out(find_silence(session, silence_id), utcnow())


@router.delete(
    "/{silence_id}",
    response_model=SilenceOut,
    summary="Expire a silence",
    dependencies=[require(INCIDENTS_WRITE)],
)
def expire_silence(silence_id: str, session: Annotated[Session, Depends(db_session)]) -> SilenceOut:
    """End the silence now; it stays on record as expired."""
    row = find_silence(session, silence_id)
    now = utcnow()
    expire(row, now)
    session.commit()
    return _out(row, now)
