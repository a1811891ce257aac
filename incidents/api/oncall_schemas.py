"""Request and response bodies of the users and schedules endpoints (beyond the
documents themselves, which are `incidents.oncall.documents`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from incidents.oncall.documents import Schedule
from incidents.oncall.fields import Moment, UserName

from .schemas import ErrorBody

SCHEDULE_EXAMPLE: Final[dict[str, Any]] = {
    "name": "primary",
    "time_zone": "Europe/Berlin",
    "team": "database",
    "layers": [
        {"users": ["alice", "bob"], "rotation": "1w", "handoff": "2026-11-16T09:00:00Z"},
        {
            "users": ["carol"],
            "rotation": "1d",
            "handoff": "2026-11-16T09:00:00",
            "restrictions": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "17:00"}
            ],
        },
    ],
    "overrides": [
        {
            "id": "3f2a9c1d0b7e",
            "user": "carol",
            "from": "2026-11-20T18:00:00Z",
            "to": "2026-11-21T09:00:00Z",
        }
    ],
}


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class OverrideIn(BaseModel):
    """An override to add: someone on call instead, from `from` until `to`."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "example": {
                "user": "carol",
                "from": "2026-11-20T18:00:00Z",
                "to": "2026-11-21T09:00:00Z",
            }
        },
    )

    user: UserName = Field(description="Who is on call instead; must be in the users document.")
    from_: Moment = Field(alias="from", description="Start (ISO 8601; no zone: the schedule's).")
    to: Moment = Field(description="End (ISO 8601), after `from`.")


class OnCallOut(BaseModel):
    """Who is on call in a schedule at one time."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "schedule": "primary",
                "at": "2026-11-23T10:00:00Z",
                "users": ["alice"],
                "gap": False,
                "source": "layer 0",
                "until": "2026-11-23T17:00:00Z",
            }
        }
    )

    schedule: str = Field(description="The schedule's name.")
    at: datetime = Field(description="The time asked about (UTC).")
    users: list[str] = Field(description="Who is on call; empty in a gap.")
    gap: bool = Field(description="True when nobody is on call: no layer and no override.")
    source: str | None = Field(
        description="`layer N` (the highest layer with someone on call) or `override`; "
        "null in a gap."
    )
    until: datetime | None = Field(
        description="When this person (or the gap) stops, if within 31 days; else null."
    )


class ShiftOut(_Out):
    """One piece of the final on-call timeline: a shift, or a gap."""

    user: str | None = Field(description="Who is on call; null in a gap.")
    start: datetime = Field(description="Start (UTC), clipped to the range asked for.")
    end: datetime = Field(description="End (UTC), clipped to the range asked for.")
    gap: bool = Field(description="True when nobody is on call.")
    source: str | None = Field(description="`layer N` or `override`; null in a gap.")
    layer: int | None = Field(description="The layer's index, when from a layer.")
    override_id: str | None = Field(description="The override's id, when from an override.")


class ShiftsOut(_Out):
    """The shifts and gaps of a schedule in a range, in order; together they cover it."""

    schedule: str = Field(description="The schedule's name.")
    from_: datetime = Field(alias="from", description="Start of the range (UTC).")
    to: datetime = Field(description="End of the range (UTC).")
    shifts: list[ShiftOut] = Field(description="Shifts and gaps, in order, none overlapping.")


class GapOut(_Out):
    """A time when nobody is on call."""

    from_: datetime = Field(alias="from", description="Start (UTC).")
    to: datetime = Field(description="End (UTC).")


class ScheduleProblem(BaseModel):
    """Something wrong with a schedule: a gap in the coming days."""

    schedule: str = Field(description="The schedule's name.")
    gap: GapOut = Field(description="A time in the next 7 days when nobody is on call.")


class SchedulesView(BaseModel):
    """The schedules document, and the problems found in it."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "schedules": [SCHEDULE_EXAMPLE],
                "problems": [
                    {
                        "schedule": "primary",
                        "gap": {"from": "2026-11-28T17:00:00Z", "to": "2026-11-30T08:00:00Z"},
                    }
                ],
            }
        }
    )

    schedules: list[Schedule] = Field(description="Every schedule: the document PUT takes.")
    problems: list[ScheduleProblem] = Field(
        description="Gaps in the next 7 days (at most 20 per schedule)."
    )


NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": ErrorBody, "description": "No schedule of that name."}
}
INVALID_DOCUMENT: Final[dict[int | str, dict[str, Any]]] = {
    422: {
        "model": ErrorBody,
        "description": "The document is invalid; `field` names the path of the first "
        "problem, such as `schedules[0].layers[1].rotation`, and `errors` lists them all.",
    }
}
