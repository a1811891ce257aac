"""The value types of the users and schedules documents: names, zones, rotations, times.

Each is an annotated type whose validator raises ValueError with a message for people.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Final, Literal, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from incidents.notify.routing_config import (
    _check_duration,
    _check_email,
    _check_phone,
    _duration_text,
)

T = TypeVar("T")

# Names a schedule by in a URL (`/api/v1/schedules/{name}.ics`): no dots, no slashes.
_SCHEDULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", re.ASCII)
# People are often named by their email address or a chat handle.
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}", re.ASCII)
_OVERRIDE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", re.ASCII)
# Slack member ids: U... (or W... on Enterprise Grid).
_SLACK_ID = re.compile(r"[UW][A-Z0-9]{2,31}", re.ASCII)
_ROTATION = re.compile(r"([1-9][0-9]{0,4})([hdw])", re.ASCII)
_CLOCK = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00", re.ASCII)
# A rotation longer than a year is a typo; a year also bounds the rotation arithmetic.
MAX_ROTATION_DAYS: Final = 366
# Times outside these years are typos, and keep every computation inside datetime's range.
MIN_YEAR: Final = 1970
MAX_YEAR: Final = 2999


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    """Every IANA time zone name this machine knows (system data, else the tzdata package)."""
    return frozenset(zoneinfo.available_timezones())


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The time zone of a name that validation accepted."""
    return zoneinfo.ZoneInfo(name)


def _check_zone(name: str) -> str:
    if name not in known_zones():
        close = difflib.get_close_matches(name, sorted(known_zones()), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(
            f"{name[:80]!r} is not an IANA time zone such as Europe/Berlin or UTC{hint}"
        )
    return name


def _plain(check: Callable[[T], T]) -> Callable[[T], T]:
    def run(value: T) -> T:
        try:
            return check(value)
        except ValueError as exc:
            raise PydanticCustomError("invalid", "{reason}", {"reason": str(exc)}) from None

    return run


def _checked(check: Callable[[T], T]) -> AfterValidator:
    """A validator whose ValueError message is the whole message (no "Value error, ")."""
    return AfterValidator(_plain(check))


def _pattern(regex: re.Pattern[str], what: str) -> AfterValidator:
    def check(text: str) -> str:
        if not regex.fullmatch(text):
            raise ValueError(f"{text[:80]!r} is not a valid {what}")
        return text

    return _checked(check)


def parse_rotation(text: str) -> tuple[int, str]:
    """`12h`, `1d`, `2w` as (count, unit); ValueError for anything else."""
    found = _ROTATION.fullmatch(text)
    if found is None:
        raise ValueError(
            f"{text[:80]!r} is not a rotation length: write a number and h, d or w "
            "(hours, days or weeks), such as 12h, 1d, 1w or 2w"
        )
    count, unit = int(found[1]), found[2]
    days = count / 24 if unit == "h" else count * (7 if unit == "w" else 1)
    if days > MAX_ROTATION_DAYS:
        raise ValueError(f"rotation {text!r} is longer than {MAX_ROTATION_DAYS} days")
    return count, unit


def _check_rotation(text: str) -> str:
    parse_rotation(text)
    return text


def _check_time(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value


def _check_clock(text: str) -> str:
    if not _CLOCK.fullmatch(text):
        raise ValueError(f"{text[:80]!r} is not a time of day such as 09:00 or 17:30")
    return text


def minutes(clock: str) -> int:
    """Minutes after midnight of `HH:MM` (`24:00` is 1440)."""
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


ScheduleName = Annotated[
    str, _pattern(_SCHEDULE_NAME, "schedule name (letters, digits, - and _; at most 64)")
]
UserName = Annotated[
    str, _pattern(_USER_NAME, "user name (letters, digits and . _ @ + -; at most 128)")
]
OverrideId = Annotated[str, _pattern(_OVERRIDE_ID, "override id")]
SlackUserId = Annotated[str, _pattern(_SLACK_ID, "Slack member id such as U012AB3CD")]
TimeZone = Annotated[str, _checked(_check_zone)]
Rotation = Annotated[str, _checked(_check_rotation)]
Clock = Annotated[str, _checked(_check_clock)]
# A time with a zone, or without one: then it is wall-clock time in the schedule's zone.
Moment = Annotated[datetime, _checked(_check_time)]
Phone = Annotated[str, _checked(_check_phone)]
Email = Annotated[str, _checked(_check_email)]
Duration = Annotated[str, BeforeValidator(_plain(_duration_text)), _checked(_check_duration)]
Team = Annotated[str, Field(min_length=1, max_length=128)]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: Final[tuple[Day, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Channel = Literal["slack", "sms", "voice", "email"]
Problem = tuple[tuple[str | int, ...], str]
