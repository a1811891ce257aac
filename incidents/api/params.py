"""Query and path parameters as the read API takes them: typed, bounded, and only known ones.

Each bound here keeps a value that the database cannot hold from reaching it, so bad
input is a 422 that names the parameter instead of a database error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AfterValidator

from incidents.exceptions import ValidationFailed

# Row ids are INTEGER columns: int4 on PostgreSQL. A larger id cannot exist, and binding
# one fails in the database instead of finding nothing.
MAX_ROW_ID = 2**31 - 1


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:03+01:05 is a valid ISO time whose UTC instant is before year 1.
        raise ValueError("out of range: the time in UTC must fall in years 1 to 9999") from None


UtcDateTime = Annotated[datetime, AfterValidator(_to_utc)]
"""An ISO 8601 time, normalised to UTC; a time without a zone is taken as UTC."""

IncidentId = Annotated[
    int, Path(ge=1, le=MAX_ROW_ID, description="The incident's id.", examples=[1])
]

CURSOR_PATTERN = r"^[1-9][0-9]{0,9}$"


def parse_cursor(value: str | None) -> int | None:
    """A pagination cursor as this API hands them out: a row id."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 10):
        raise ValidationFailed("cursor: not a cursor this API returned", field="cursor")
    after = int(value)
    if not 1 <= after <= MAX_ROW_ID:
        raise ValidationFailed("cursor: not a cursor this API returned", field="cursor")
    return after


def _declared(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names


async def strict_params(request: Request) -> None:
    """Refuse query parameters the operation does not take, and NUL in any parameter."""
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        # A handful of parameters: cheaper to collect than to cache by route.
        declared = _declared(route.dependant)
        unknown = sorted(set(request.query_params) - declared)
        if unknown:
            names = ", ".join(repr(n[:64]) for n in unknown[:10])
            known = ", ".join(sorted(declared)) or "none"
            raise ValidationFailed(
                f"{unknown[0][:64]}: unknown query parameter{'s' if len(unknown) > 1 else ''} "
                f"{names}; this operation takes: {known}",
                field=unknown[0][:64],
                errors=[
                    {"field": n[:64], "message": "unknown query parameter"} for n in unknown[:20]
                ],
            )
    # PostgreSQL text cannot hold NUL: refuse it here, by name, not in the database.
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str) and "\x00" in value:
            raise ValidationFailed(f"{name}: NUL characters are not allowed", field=name)
