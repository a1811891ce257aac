"""Silences and maintenance windows: create, list, read, expire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.correlation.store import current_graph
from incidents.db import utcnow
from incidents.exceptions import NotFound, ValidationFailed
from incidents.models import SILENCES, Silence
from incidents.routing.matchers import Matcher, parse_matchers

from .deps import as_utc, check_token, db_session
from .params import strict_params

router = APIRouter(
    prefix="/api/v1/silences",
    tags=["silences"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)


class SilenceIn(BaseModel):
    """A new silence (matchers) or maintenance window (service), or both."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[str] | str = Field(default_factory=list)
    service: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime
    created_by: str = Field(min_length=1, max_length=255)
    comment: str = Field(min_length=1, max_length=10000)


class SilenceOut(BaseModel):
    """A silence as the API shows it."""

    id: str
    state: Literal["pending", "active", "expired"]
    matchers: list[str]
    service: str | None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime


def _state(row: Silence, now: datetime) -> Literal["pending", "active", "expired"]:
    if row.ends_at <= now:
        return "expired"
    return "pending" if row.starts_at > now else "active"


def _out(row: Silence, now: datetime) -> SilenceOut:
    return SilenceOut(
        id=row.id,
        state=_state(row, now),
        matchers=list(row.matchers),
        service=row.service,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
        created_at=row.created_at,
    )


@router.post("", response_model=SilenceOut, status_code=201, summary="Create a silence")
def create_silence(body: SilenceIn, session: Annotated[Session, Depends(db_session)]) -> SilenceOut:
    """Mute matching alerts (and, with `service`, every alert of that service) for a time."""
    now = utcnow()
    texts = [body.matchers] if isinstance(body.matchers, str) else list(body.matchers)
    normalised: list[str] = []
    every: list[Matcher] = []
    for index, text in enumerate(texts):
        parsed = parse_matchers(text, where=f"matchers[{index}]")
        normalised.extend(str(m) for m in parsed)
        every.extend(parsed)
    if every and body.service is None and all(m.matches({}) for m in every):
        # As Alertmanager: a silence must not mute every alert by accident.
        raise ValidationFailed(
            "matchers: every matcher also matches an empty label set, so the silence would "
            "mute everything; add one that selects something",
            field="matchers",
        )
    if not normalised and body.service is None:
        raise ValidationFailed(
            "matchers: give at least one matcher, or a service for a maintenance window",
            field="matchers",
        )
    starts_at = as_utc(body.starts_at) or now
    ends_at = as_utc(body.ends_at)
    assert ends_at is not None
    if ends_at <= starts_at:
        raise ValidationFailed("ends_at: must be after starts_at", field="ends_at")
    if ends_at <= now:
        raise ValidationFailed("ends_at: must be in the future", field="ends_at")
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
        created_by=body.created_by,
        comment=body.comment,
        created_at=now,
    )
    session.add(row)
    session.commit()
    return _out(row, now)


@router.get("", response_model=list[SilenceOut], summary="List silences")
def list_silences(
    session: Annotated[Session, Depends(db_session)],
    state: Literal["active", "pending", "expired", "all"] | None = None,
) -> list[SilenceOut]:
    """Silences, newest first; without `state`, those not yet expired."""
    now = utcnow()
    query = select(Silence).order_by(SILENCES.c.created_at.desc())
    if state in (None, "active", "pending"):
        query = query.where(SILENCES.c.ends_at > now)
    elif state == "expired":
        query = query.where(SILENCES.c.ends_at <= now)
    rows = [_out(r, now) for r in session.scalars(query.limit(1000))]
    if state in ("active", "pending"):
        rows = [r for r in rows if r.state == state]
    return rows


def _get(session: Session, silence_id: str) -> Silence:
    row = session.get(Silence, silence_id)
    if row is None:
        raise NotFound(f"no silence {silence_id!r}", field="silence_id")
    return row


@router.get("/{silence_id}", response_model=SilenceOut, summary="One silence")
def get_silence(silence_id: str, session: Annotated[Session, Depends(db_session)]) -> SilenceOut:
    """The silence with this id."""
    return _out(_get(session, silence_id), utcnow())


@router.delete("/{silence_id}", response_model=SilenceOut, summary="Expire a silence")
def expire_silence(silence_id: str, session: Annotated[Session, Depends(db_session)]) -> SilenceOut:
    """End the silence now; it stays on record as expired."""
    row = _get(session, silence_id)
    now = utcnow()
    if row.ends_at > now:
        row.starts_at = min(row.starts_at, now)
        row.ends_at = now
        row.expired_at = now
        session.commit()
    return _out(row, now)
