"""Silences in the shape of Alertmanager's v2 API, so that amtool and Grafana manage ours.

The same table as `/api/v1/silences`: one set of silences, two shapes. A maintenance
window (a silence on a service) shows here as the matcher `__service__="<name>"`, which
mutes exactly the alerts the window mutes. As in Alertmanager:
- posting a body with the `id` of a silence updates it in place when only its end, its
  comment or its author change (or the start of one that is still pending); otherwise the
  old silence is expired and a new one, with a new id, replaces it;
- expiring sets `endsAt` to now (and `startsAt` too, for a pending silence);
- expired silences are listed for five days (Alertmanager's default retention);
- bad input is a 400, and an unknown id a 404, whose body is a JSON string (the message,
  naming the field): amtool and other clients generated from Alertmanager's OpenAPI
  document show that string, and show nothing of any other error body.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from incidents import __version__
from incidents.api.queries import silences as queries
from incidents.apikeys.scopes import INCIDENTS_READ, INCIDENTS_WRITE
from incidents.db import utcnow
from incidents.exceptions import BadRequest, NotFound, ValidationFailed
from incidents.models import Silence
from incidents.pipeline.mute import stored_matchers
from incidents.routing.matchers import Matcher, Op, parse_matcher

from .deps import check_token, db_session
from .errors import validation_details
from .principal import current, require
from .responses import JsonResponse
from .silences import (
    State,
    ZonedDatetime,
    check_matchers,
    check_window,
    expire,
    find_silence,
    silence_state,
)


class AlertmanagerRoute(APIRoute):
    """A route that answers bad input and unknown ids as Alertmanager does."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so that its 400 and 404 bodies are JSON strings."""
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                details = validation_details(exc) or [{"field": "request", "message": "invalid"}]
                first = details[0]
                return JsonResponse(f"{first['field']}: {first['message']}", status_code=400)
            except (ValidationFailed, BadRequest) as exc:
                return JsonResponse(exc.message, status_code=400)
            except NotFound as exc:
                return JsonResponse(exc.message, status_code=404)
            except HTTPException as exc:
                # FastAPI's own 400 for a body that is not JSON at all.
                if exc.status_code != 400:
                    raise
                return JsonResponse(f"body: {exc.detail}", status_code=400)

        return answer


router = APIRouter(
    prefix="/api/v2",
    tags=["silences (Alertmanager v2 API)"],
    dependencies=[Depends(check_token)],
    route_class=AlertmanagerRoute,
    responses={
        400: {"description": "Bad input: the message, naming the field, as a JSON string"},
        404: {"description": "No such silence: the message as a JSON string"},
    },
)

RETENTION = timedelta(days=5)


class AmMatcher(BaseModel):
    """A matcher as Alertmanager's API writes it."""

    name: str = Field(min_length=1, description="Label name")
    value: str = Field(description="Value, or regex when `isRegex` (RE2, fully anchored)")
    isRegex: bool = Field(description="Match `value` as a regular expression")
    isEqual: bool = Field(default=True, description="False negates the match (`!=`, `!~`)")

    def op(self) -> Op:
        """The operator these flags stand for."""
        if self.isRegex:
            return Op.RE if self.isEqual else Op.NRE
        return Op.EQ if self.isEqual else Op.NE

    @classmethod
    def of(cls, matcher: Matcher) -> AmMatcher:
        """The API form of one of our matchers."""
        return cls(
            name=matcher.name,
            value=matcher.value,
            isRegex=matcher.is_regex,
            isEqual=matcher.is_equal,
        )


class PostableSilence(BaseModel):
    """A new silence, or (with `id`) a change to one."""

    # Fields Alertmanager does not know are ignored, as Alertmanager ignores them.
    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(default=None, description="Set to update this silence")
    matchers: list[AmMatcher] = Field(min_length=1, description="All must match to mute")
    startsAt: ZonedDatetime = Field(description="RFC 3339 with a time zone")
    endsAt: ZonedDatetime = Field(description="RFC 3339 with a time zone")
    createdBy: str = Field(min_length=1, max_length=255, description="Who made it")
    comment: str = Field(min_length=1, max_length=10000, description="Why it exists")


class SilenceStatus(BaseModel):
    """Where the silence is in its life."""

    state: State = Field(description="pending before startsAt, active until endsAt, then expired")


class GettableSilence(BaseModel):
    """A silence as Alertmanager's API shows it."""

    id: str = Field(description="The silence's id (a UUID), shared with /api/v1/silences")
    status: SilenceStatus = Field(description="Its state now")
    updatedAt: str = Field(description="When it was last changed (RFC 3339, UTC)")
    matchers: list[AmMatcher] = Field(description="All must match to mute")
    startsAt: str = Field(description="When it starts muting (RFC 3339, UTC)")
    endsAt: str = Field(description="When it stops muting (RFC 3339, UTC); now once expired")
    createdBy: str = Field(description="Who made it")
    comment: str = Field(description="Why it exists")


class SilenceCreated(BaseModel):
    """The id of the silence created or updated."""

    silenceID: str = Field(description="The id of the silence created (or that replaced it)")


class AmStatus(BaseModel):
    """Enough of Alertmanager's status for clients that check it before they act."""

    cluster: dict[str, object] = Field(
        description="Clustering is not used: status disabled, no peers"
    )
    versionInfo: dict[str, str] = Field(description="This service's version, not Alertmanager's")
    config: dict[str, str] = Field(description="Empty: the configuration is not exposed")
    uptime: str = Field(description="When this process started (RFC 3339, UTC)")


_STARTED = utcnow()


def _time(value: datetime) -> str:
    # Alertmanager's form: UTC, milliseconds, `Z`.
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _matchers(row: Silence) -> list[Matcher]:
    found = [m for text in row.matchers for m in stored_matchers(text)]
    if row.service is not None:
        found.append(Matcher.create("__service__", Op.EQ, row.service))
    return found


def _key(matchers: list[Matcher]) -> list[tuple[str, str, str]]:
    return sorted((m.name, m.op.value, m.value) for m in matchers)


def _out(row: Silence, now: datetime) -> GettableSilence:
    return GettableSilence(
        id=row.id,
        status=SilenceStatus(state=silence_state(row, now)),
        updatedAt=_time(row.updated_at or row.expired_at or row.created_at),
        matchers=[AmMatcher.of(m) for m in _matchers(row)],
        startsAt=_time(row.starts_at),
        endsAt=_time(row.ends_at),
        createdBy=row.created_by,
        comment=row.comment,
    )


def _in_place(row: Silence, wanted: list[Matcher], body: PostableSilence, now: datetime) -> bool:
    """Alertmanager's rule for changing a silence without replacing it."""
    if _key(_matchers(row)) != _key(wanted):
        return False
    state = silence_state(row, now)
    if state == "active":
        return _ms(body.startsAt) == _ms(row.starts_at) and body.endsAt >= now
    if state == "pending":
        return body.startsAt >= now
    return False


@router.post(
    "/silences",
    response_model=SilenceCreated,
    summary="Create or update a silence (Alertmanager v2)",
    dependencies=[require(INCIDENTS_WRITE)],
)
def post_silence(
    body: PostableSilence, request: Request, session: Annotated[Session, Depends(db_session)]
) -> SilenceCreated:
    """Create a silence; with the `id` of an existing one, update or replace it. `createdBy`
    is recorded for an admin key; any other key is recorded as its owner (else its name)."""
    now = utcnow()
    created_by = current(request).acting_as(body.createdBy)
    wanted = [
        Matcher.create(m.name, m.op(), m.value, where=f"matchers[{index}]")
        for index, m in enumerate(body.matchers)
    ]
    check_matchers(wanted, None)
    check_window(body.startsAt, body.endsAt, now, names=("startsAt", "endsAt"))
    if body.id:
        old = queries.get_silence(session, silence_id=body.id)
        if old is None:
            raise NotFound(f"no silence {body.id!r}", field="id")
        if _in_place(old, wanted, body, now):
            old.starts_at = body.startsAt
            old.ends_at = body.endsAt
            old.created_by = created_by
            old.comment = body.comment
            old.updated_at = now
            session.commit()
            return SilenceCreated(silenceID=old.id)
        expire(old, now)
    row = Silence(
        id=str(uuid.uuid4()),
        matchers=[str(m) for m in wanted],
        service=None,
        starts_at=max(body.startsAt, now),
        ends_at=body.endsAt,
        created_by=created_by,
        comment=body.comment,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.commit()
    return SilenceCreated(silenceID=row.id)


@router.get(
    "/silences",
    response_model=list[GettableSilence],
    summary="List silences (Alertmanager v2)",
    dependencies=[require(INCIDENTS_READ)],
)
def list_silences(
    session: Annotated[Session, Depends(db_session)],
    filter: Annotated[
        list[str] | None,
        Query(description='Matchers the silence must have, e.g. filter=alertname="DiskFull"'),
    ] = None,
) -> list[GettableSilence]:
    """Active, pending and recently expired silences, in Alertmanager's order."""
    now = utcnow()
    wanted = {
        (m.name, m.op.value, m.value)
        for index, text in enumerate(filter or [])
        for m in [parse_matcher(text, where=f"filter[{index}]")]
    }
    rows = queries.silences_ending_after(session, after=now - RETENTION)

    def order(row: Silence) -> tuple[int, float]:
        # Active: the next to end first; pending: the next to start; expired: the latest.
        state = silence_state(row, now)
        if state == "active":
            return 0, row.ends_at.timestamp()
        if state == "pending":
            return 1, row.starts_at.timestamp()
        return 2, -row.ends_at.timestamp()

    found = []
    for row in sorted(rows, key=order):
        try:
            found.append(_out(row, now))
        except ValidationFailed:
            continue  # unreadable since matchers follow Alertmanager's grammar; logged by mute

    # As Alertmanager: each filter must be one of the silence's own matchers.
    return [s for s in found if wanted <= {(m.name, m.op().value, m.value) for m in s.matchers}]


@router.get(
    "/silence/{silence_id}",
    response_model=GettableSilence,
    summary="One silence (Alertmanager v2)",
    dependencies=[require(INCIDENTS_READ)],
)
def get_one(silence_id: str, session: Annotated[Session, Depends(db_session)]) -> GettableSilence:
    """The silence with this id."""
    return _out(find_silence(session, silence_id), utcnow())


@router.delete(
    "/silence/{silence_id}",
    summary="Expire a silence (Alertmanager v2)",
    # As Alertmanager answers: 200 with an empty body, so no JSON is documented.
    response_class=Response,
    responses={200: {"description": "Expired; the body is empty"}},
    dependencies=[require(INCIDENTS_WRITE)],
)
def delete_one(silence_id: str, session: Annotated[Session, Depends(db_session)]) -> Response:
    """End the silence now: its `endsAt` becomes now, and it stays on record as expired."""
    row = find_silence(session, silence_id)
    expire(row, utcnow())
    session.commit()
    return Response(status_code=200)


@router.get(
    "/status",
    response_model=AmStatus,
    summary="Status (Alertmanager v2 subset)",
    dependencies=[require(INCIDENTS_READ)],
)
def status() -> AmStatus:
    """Version and uptime, for clients that check the server before they act."""
    return AmStatus(
        cluster={"status": "disabled", "peers": []},
        versionInfo={
            "version": __version__,
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        },
        config={"original": ""},
        uptime=_time(_STARTED),
    )
