"""On-call schedules: the document, who is on call, the shifts, overrides, a calendar feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from incidents.apikeys.scopes import CONFIG_WRITE, INCIDENTS_READ
from incidents.db import utcnow
from incidents.exceptions import ValidationFailed
from incidents.oncall.documents import Override, Schedule, SchedulesDocument
from incidents.oncall.fields import MAX_YEAR, MIN_YEAR
from incidents.oncall.ics import calendar
from incidents.oncall.lookup import directory
from incidents.oncall.store import (
    OverrideRequest,
    add_override,
    dump,
    find_schedule,
    read_schedules,
    remove_override,
    replace_schedules,
)
from incidents.oncall.timeline import MAX_RANGE, Slot

from .deps import check_token, db_session
from .oncall_schemas import (
    INVALID_DOCUMENT,
    NOT_FOUND,
    SCHEDULE_EXAMPLE,
    OnCallOut,
    OverrideIn,
    SchedulesView,
    ShiftsOut,
)
from .params import UtcDateTime, strict_params
from .principal import require
from .responses import JsonResponse

router = APIRouter(
    prefix="/api/v1/schedules",
    tags=["schedules"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)

# What GET /schedules reports as problems, and what the calendar feed covers.
PROBLEM_HORIZON: Final = timedelta(days=7)
MAX_PROBLEMS: Final = 20
FEED_PAST: Final = timedelta(days=7)
FEED_AHEAD: Final = timedelta(days=60)
_LOW: Final = datetime(MIN_YEAR + 1, 1, 1, tzinfo=UTC)
_HIGH: Final = datetime(MAX_YEAR - 1, 1, 1, tzinfo=UTC)

Name = Annotated[str, Path(description="The schedule's name.", max_length=64)]
At = Annotated[
    UtcDateTime | None,
    Query(description="ISO 8601 time (without a zone: UTC); default now."),
]


def _bounded(value: datetime | None, field: str) -> datetime:
    if value is None:
        return utcnow()
    if not _LOW <= value <= _HIGH:
        raise ValidationFailed(
            f"{field}: must fall between the years {MIN_YEAR + 1} and {MAX_YEAR - 1}",
            field=field,
        )
    return value


def _shift(slot: Slot) -> dict[str, Any]:
    return {
        "user": slot.user,
        "start": slot.start,
        "end": slot.end,
        "gap": slot.gap,
        "source": slot.source,
        "layer": slot.layer,
        "override_id": slot.override_id,
    }


@router.get(
    "",
    summary="The schedules document, and the gaps of the coming week",
    responses={200: {"model": SchedulesView, "description": "Every schedule, and problems."}},
    dependencies=[require(INCIDENTS_READ)],
)
def get_schedules(session: Annotated[Session, Depends(db_session)], at: At = None) -> JsonResponse:
    """`{"schedules": [...], "problems": [...]}`: the document PUT takes, and each gap (a
    time nobody is on call) in the 7 days from `at`."""
    now = _bounded(at, "at")
    document = read_schedules(session)
    known = directory(session)
    problems: list[dict[str, Any]] = []
    for schedule in document.schedules:
        gaps = known.plan(schedule.name).gaps(now, now + PROBLEM_HORIZON)
        problems.extend(
            {"schedule": schedule.name, "gap": {"from": gap.start, "to": gap.end}}
            for gap in gaps[:MAX_PROBLEMS]
        )
    return JsonResponse({**dump(document), "problems": problems})


@router.put(
    "",
    summary="Replace the schedules document",
    responses={200: {"model": SchedulesDocument, "description": "Stored."}, **INVALID_DOCUMENT},
    dependencies=[require(CONFIG_WRITE)],
)
def put_schedules(
    document: Annotated[SchedulesDocument, Body(examples=[{"schedules": [SCHEDULE_EXAMPLE]}])],
    session: Annotated[Session, Depends(db_session)],
) -> JsonResponse:
    """Replace every schedule. Each user named must be in the users document; overrides
    without an id get one."""
    stored = replace_schedules(session, document)
    session.commit()
    return JsonResponse(dump(stored))


@router.get(
    "/{name}.ics",
    summary="A schedule's shifts as an iCalendar feed",
    responses={
        200: {
            "description": "text/calendar: the shifts of the past 7 and the next 60 days.",
            "content": {"text/calendar": {"schema": {"type": "string"}}},
        },
        **NOT_FOUND,
    },
    response_class=Response,
    dependencies=[require(INCIDENTS_READ)],
)
def get_calendar(name: Name, session: Annotated[Session, Depends(db_session)]) -> Response:
    """With a key (e.g. as basic auth). For calendar apps, which send none, ask
    `GET /api/v1/schedules/{name}/feed-url` for a secret link."""
    return calendar_response(session, name)


def calendar_response(session: Session, name: str) -> Response:
    """A schedule's feed: the shifts of the past 7 and the next 60 days."""
    now = utcnow()
    plan = directory(session).plan(name)
    text = calendar(name, plan.timeline(now - FEED_PAST, now + FEED_AHEAD), now=now)
    return Response(
        text,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{name}.ics"'},
    )


@router.get(
    "/{name}",
    summary="One schedule",
    responses={200: {"model": Schedule, "description": "The schedule."}, **NOT_FOUND},
    dependencies=[require(INCIDENTS_READ)],
)
def get_schedule(name: Name, session: Annotated[Session, Depends(db_session)]) -> JsonResponse:
    """The schedule as stored (its part of the schedules document)."""
    data = find_schedule(session, name).model_dump(mode="json", exclude_none=True)
    return JsonResponse(data)


@router.get(
    "/{name}/oncall",
    summary="Who is on call",
    responses={200: {"model": OnCallOut, "description": "Who is on call."}, **NOT_FOUND},
    dependencies=[require(INCIDENTS_READ)],
)
def get_oncall(
    name: Name, session: Annotated[Session, Depends(db_session)], at: At = None
) -> JsonResponse:
    """Who is on call at `at` (default now). A gap is `users: []` and `gap: true`."""
    instant = _bounded(at, "at")
    plan = directory(session).plan(name)
    slot = plan.current(instant)
    until = slot.end if slot.end < instant + timedelta(days=31) else None
    return JsonResponse(
        {
            "schedule": name,
            "at": instant,
            "users": [] if slot.user is None else [slot.user],
            "gap": slot.gap,
            "source": slot.source,
            "until": until,
        }
    )


@router.get(
    "/{name}/shifts",
    summary="The shifts and gaps in a range",
    responses={200: {"model": ShiftsOut, "description": "The final timeline."}, **NOT_FOUND},
    dependencies=[require(INCIDENTS_READ)],
)
def get_shifts(
    name: Name,
    session: Annotated[Session, Depends(db_session)],
    from_: Annotated[
        UtcDateTime | None,
        Query(alias="from", description="Start (ISO 8601; no zone: UTC); default now."),
    ] = None,
    to: Annotated[
        UtcDateTime | None,
        Query(description="End (ISO 8601), at most 90 days after `from`; default `from` + 7d."),
    ] = None,
) -> JsonResponse:
    """The final on-call timeline: layers and overrides merged, the gaps in it as entries
    with `user: null, gap: true`. Together the entries cover the range exactly."""
    start = _bounded(from_, "from")
    end = _bounded(to, "to") if to is not None else start + timedelta(days=7)
    if end <= start:
        raise ValidationFailed("to: must be after `from`", field="to")
    if end - start > MAX_RANGE:
        raise ValidationFailed(
            f"to: the range is at most {MAX_RANGE.days} days; ask for it in pieces", field="to"
        )
    plan = directory(session).plan(name)
    slots = plan.timeline(start, end)
    return JsonResponse(
        {"schedule": name, "from": start, "to": end, "shifts": [_shift(s) for s in slots]}
    )


@router.get(
    "/{name}/overrides",
    summary="A schedule's overrides",
    responses={
        200: {"model": list[Override], "description": "Its overrides, in order."},
        **NOT_FOUND,
    },
    dependencies=[require(INCIDENTS_READ)],
)
def list_overrides(name: Name, session: Annotated[Session, Depends(db_session)]) -> JsonResponse:
    """Every override of the schedule, with its id; later ones beat earlier ones."""
    overrides = find_schedule(session, name).overrides
    return JsonResponse([o.model_dump(mode="json", exclude_none=True) for o in overrides])


@router.post(
    "/{name}/overrides",
    summary="Add an override (a swap, or cover)",
    status_code=201,
    responses={201: {"model": Override, "description": "Added, with its id."}, **NOT_FOUND},
    dependencies=[require(CONFIG_WRITE)],
)
def create_override(
    name: Name, body: OverrideIn, session: Annotated[Session, Depends(db_session)]
) -> JsonResponse:
    """Put `user` on call from `from` until `to`, above every layer of the schedule."""
    override = add_override(session, name, OverrideRequest(body.user, body.from_, body.to))
    session.commit()
    return JsonResponse(override.model_dump(mode="json", exclude_none=True), status_code=201)


@router.delete(
    "/{name}/overrides/{override_id}",
    summary="Remove an override",
    responses={
        200: {"model": Override, "description": "Removed; this is what it was."},
        404: {"model": NOT_FOUND[404]["model"], "description": "No such schedule or override."},
    },
    dependencies=[require(CONFIG_WRITE)],
)
def delete_override(
    name: Name,
    override_id: Annotated[str, Path(description="The override's id.", max_length=64)],
    session: Annotated[Session, Depends(db_session)],
) -> JsonResponse:
    """Remove the override; the layers decide again for its time."""
    removed = remove_override(session, name, override_id)
    session.commit()
    return JsonResponse(removed.model_dump(mode="json", exclude_none=True))
