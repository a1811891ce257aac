"""The users and schedules documents: what the config file's `users:` and `schedules:`
sections hold, and what `PUT /api/v1/users` and `PUT /api/v1/schedules` take.

Every problem is a pydantic error located at its own key or list item, so the settings
name the file and line of each one and the API names its path, such as
`schedules[0].layers[1].rotation`. Whether the users a schedule names exist is checked
where both documents are known (`unknown_users`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from incidents.documents import Problems
from incidents.exceptions import ValidationFailed
from incidents.notify.routing_config import _fail, parse_duration
from incidents.oncall.fields import (
    DAYS,
    Channel,
    Clock,
    Day,
    Duration,
    Email,
    Moment,
    OverrideId,
    Phone,
    Problem,
    Rotation,
    ScheduleName,
    SlackUserId,
    Team,
    TimeZone,
    UserName,
    minutes,
    zone,
)


class _Doc(BaseModel):
    # `from` is a Python keyword: the fields are `from_`, shown and read as `from`.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, serialize_by_alias=True, frozen=True
    )


class NotificationRule(_Doc):
    """One step of how a person wants to be reached while an incident is unacknowledged."""

    channel: Channel = Field(description="slack, sms, voice or email.")
    after: Duration = Field(
        description="How long after they are paged, e.g. 0m, 1m, 5m (30s, 1h30m also work)."
    )

    @property
    def delay(self) -> timedelta:
        """`after` as a timedelta."""
        return parse_duration(self.after)


class User(_Doc):
    """A person who can be on call."""

    name: UserName = Field(description="Unique name, as schedules refer to the person.")
    email: Email | None = Field(default=None, description="Email address.")
    phone: Phone | None = Field(
        default=None, description="Phone number in E.164 form, e.g. +15005550006."
    )
    slack_user_id: SlackUserId | None = Field(
        default=None, description="Slack member id, e.g. U012AB3CD."
    )
    time_zone: TimeZone = Field(default="UTC", description="IANA time zone, e.g. Europe/Berlin.")
    team: Team | None = Field(default=None, description="The team the person belongs to.")
    notification_rules: list[NotificationRule] = Field(
        default_factory=list,
        max_length=20,
        description="Personal rules: each channel, and how long after the page it is used.",
    )

    @model_validator(mode="after")
    def _contacts(self) -> User:
        needs = {"slack": "slack_user_id", "sms": "phone", "voice": "phone", "email": "email"}
        problems: list[Problem] = []
        for index, rule in enumerate(self.notification_rules):
            field = needs[rule.channel]
            if getattr(self, field) is None:
                problems.append(
                    (
                        ("notification_rules", index, "channel"),
                        f"{rule.channel} needs the user's {field}, which is not set",
                    )
                )
        _fail(problems)
        return self


class UsersDocument(_Doc):
    """Every user: `PUT /api/v1/users` takes it, `GET` returns it."""

    users: list[User] = Field(max_length=10_000, description="Every user, names unique.")

    @model_validator(mode="after")
    def _unique(self) -> UsersDocument:
        problems: list[Problem] = []
        for field in ("name", "phone", "slack_user_id"):
            seen: dict[str, int] = {}
            for index, user in enumerate(self.users):
                value = getattr(user, field)
                if value is None:
                    continue
                if value in seen:
                    problems.append(
                        (
                            ("users", index, field),
                            f"{value!r} is also the {field} of users[{seen[value]}]",
                        )
                    )
                seen.setdefault(value, index)
        _fail(problems)
        return self


class Restriction(_Doc):
    """A wall-clock window, in the schedule's time zone, when a layer is on call."""

    days: list[Day] = Field(
        default_factory=lambda: list(DAYS),
        min_length=1,
        max_length=7,
        description="The days the window starts on (mon..sun); every day when left out.",
    )
    from_: Clock = Field(alias="from", description="Start, HH:MM.")
    to: Clock = Field(
        description="End, HH:MM (24:00 for midnight); earlier than `from` means the next "
        "day (22:00 to 06:00), equal to it means 24 hours."
    )

    @model_validator(mode="after")
    def _own(self) -> Restriction:
        problems: list[Problem] = []
        if self.from_ == "24:00":
            problems.append((("from",), "a window starts at 00:00 to 23:59"))
        for index, day in enumerate(self.days):
            if day in self.days[:index]:
                problems.append((("days", index), f"{day!r} is listed twice"))
        _fail(problems)
        return self

    def length_minutes(self) -> int:
        """The window's length in wall-clock minutes (1 to 1440)."""
        return (minutes(self.to) - minutes(self.from_)) % 1440 or 1440


class Layer(_Doc):
    """A rotation of users; a later layer wins wherever it has someone on call."""

    users: list[UserName] = Field(
        min_length=1, max_length=500, description="The rotation's users, in order."
    )
    rotation: Rotation = Field(
        description="Shift length: hours, days or weeks, e.g. 12h, 1d, 1w, 2w. Days and weeks "
        "hand off at the same wall-clock time across daylight-saving changes."
    )
    handoff: Moment = Field(
        description="When the rotation starts with its first user (ISO 8601; without a zone, "
        "the schedule's time zone). Before it the layer has nobody on call."
    )
    restrictions: list[Restriction] = Field(
        default_factory=list,
        max_length=50,
        description="When set, the layer is on call only within these windows.",
    )


class Override(_Doc):
    """Someone on call instead of whoever the layers say, from `from` until `to`."""

    id: OverrideId | None = Field(
        default=None, description="Assigned when stored; DELETE .../overrides/{id} removes it."
    )
    user: UserName = Field(description="Who is on call instead.")
    from_: Moment = Field(alias="from", description="Start (ISO 8601).")
    to: Moment = Field(description="End (ISO 8601), after `from`.")


class Schedule(_Doc):
    """An on-call schedule: layers of rotations, and overrides above them."""

    name: ScheduleName = Field(description="Unique name, used in URLs.")
    time_zone: TimeZone = Field(
        default="UTC", description="IANA time zone of hand-offs and restrictions."
    )
    team: Team | None = Field(
        default=None, description="The team whose on-call this schedule is, if any."
    )
    layers: list[Layer] = Field(
        min_length=1, max_length=20, description="Layers; the highest with someone on call wins."
    )
    overrides: list[Override] = Field(
        default_factory=list,
        max_length=2000,
        description="Overrides; they beat every layer, and a later one beats an earlier one.",
    )

    @model_validator(mode="after")
    def _own(self) -> Schedule:
        problems: list[Problem] = []
        ids: set[str] = set()
        for index, override in enumerate(self.overrides):
            if resolve(override.to, self.time_zone) <= resolve(override.from_, self.time_zone):
                problems.append((("overrides", index, "to"), "must be after `from`"))
            if override.id is not None:
                if override.id in ids:
                    problems.append((("overrides", index, "id"), f"{override.id!r} is used twice"))
                ids.add(override.id)
        _fail(problems)
        return self


class SchedulesDocument(_Doc):
    """Every schedule: `PUT /api/v1/schedules` takes it, `GET` returns it."""

    schedules: list[Schedule] = Field(max_length=1000, description="Every schedule, names unique.")

    @model_validator(mode="after")
    def _unique(self) -> SchedulesDocument:
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for index, schedule in enumerate(self.schedules):
            if schedule.name in seen:
                problems.append(
                    (
                        ("schedules", index, "name"),
                        f"{schedule.name!r} is also the name of schedules[{seen[schedule.name]}]",
                    )
                )
            seen.setdefault(schedule.name, index)
        _fail(problems)
        return self


def resolve(value: datetime, time_zone: str) -> datetime:
    """A document's time as an aware instant: a time without a zone is wall-clock time in
    `time_zone` (see `rotation.localize`)."""
    from incidents.oncall.rotation import localize

    if value.tzinfo is not None and value.utcoffset() is not None:
        return value
    return localize(value, zone(time_zone))


def references(
    document: SchedulesDocument,
) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """Every user a schedule names: (path, schedule name, user name)."""
    for s, schedule in enumerate(document.schedules):
        for n, layer in enumerate(schedule.layers):
            for u, name in enumerate(layer.users):
                yield ("schedules", s, "layers", n, "users", u), schedule.name, name
        for o, override in enumerate(schedule.overrides):
            yield ("schedules", s, "overrides", o, "user"), schedule.name, override.user


def unknown_users(document: SchedulesDocument, names: Iterable[str]) -> list[Problem]:
    """A problem for each user a schedule names that is not in `names`."""
    known = set(names)
    return [
        (path, f"no user {user!r} in the users document")
        for path, _, user in references(document)
        if user not in known
    ]


def check_sections(users: Sequence[User] | None, schedules: Sequence[Schedule] | None) -> None:
    """Whole-document rules of the sections (unique names; with both sections, every user a
    schedule names is listed): raises pydantic errors located at the offending item."""
    if users is not None:
        UsersDocument(users=list(users))
    if schedules is not None:
        document = SchedulesDocument(schedules=list(schedules))
        if users is not None:
            _fail(unknown_users(document, (u.name for u in users)))


def parse_users(data: Any) -> UsersDocument:
    """Validate a users document; ValidationFailed names the path of every problem."""
    try:
        return UsersDocument.model_validate(data)
    except ValidationError as exc:
        raise_problems("users", problems_of(exc))


def parse_schedules(data: Any) -> SchedulesDocument:
    """Validate a schedules document; ValidationFailed names the path of every problem."""
    try:
        return SchedulesDocument.model_validate(data)
    except ValidationError as exc:
        raise_problems("schedules", problems_of(exc))


def problems_of(exc: ValidationError) -> list[Problem]:
    """A pydantic error's problems as (path, message)."""
    return [(tuple(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]


def raise_problems(what: str, problems: Sequence[Problem]) -> NoReturn:
    """Raise one ValidationFailed naming every problem by its path."""
    collected = Problems(what, None)
    for path, message in problems:
        collected.add(path, message)
    if not collected.items:
        raise ValidationFailed(f"invalid {what}", field=what)
    collected.fail()
