"""Who is on call, and who is this: the Python API of users and schedules.

For the escalation engine and the notification channels. Every function reads the
stored documents in the caller's session (parsed once per version, per process) and
takes the time as an argument, so callers and tests control the clock:

    oncall(session, "primary", at)      -> OnCall(users=[User], gap=False, source="layer 0")
    team_oncall(session, "database", at) -> [User]
    user_by_name / user_by_phone / user_by_slack_id / user_by_email -> User | None

`directory(session)` gives the same answers from one snapshot, for many questions at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from incidents.db import utcnow
from incidents.exceptions import NotFound
from incidents.oncall.documents import Schedule, SchedulesDocument, User, UsersDocument
from incidents.oncall.store import read_schedules, read_users
from incidents.oncall.timeline import Plan, Slot

__all__ = [
    "Directory",
    "OnCall",
    "Schedule",
    "User",
    "directory",
    "oncall",
    "team_oncall",
    "user_by_email",
    "user_by_name",
    "user_by_phone",
    "user_by_slack_id",
]

_PHONE_PUNCTUATION = re.compile(r"[\s().-]")


@dataclass(frozen=True)
class OnCall:
    """Who is on call in one schedule at one time."""

    schedule: str
    at: datetime
    users: list[User]
    # Nobody is on call: no layer covers the time and no override does.
    gap: bool
    # `layer N` or `override`; None in a gap.
    source: str | None
    # The slot as the timeline has it (user name, layer, override id).
    slot: Slot


class Directory:
    """One snapshot of the users and schedules, answering any number of questions."""

    def __init__(self, users: UsersDocument, schedules: SchedulesDocument) -> None:
        self.users = list(users.users)
        self.schedules = list(schedules.schedules)
        self._by_name = {u.name: u for u in self.users}
        self._by_phone = {u.phone: u for u in self.users if u.phone}
        self._by_slack = {u.slack_user_id: u for u in self.users if u.slack_user_id}
        self._by_email: dict[str, User] = {}
        for user in self.users:
            if user.email:
                self._by_email.setdefault(user.email.lower(), user)
        self._schedules = {s.name: s for s in self.schedules}
        self._plans: dict[str, Plan] = {}

    def user_by_name(self, name: str) -> User | None:
        """The user of this name."""
        return self._by_name.get(name)

    def user_by_phone(self, phone: str) -> User | None:
        """The user with this phone number (E.164; spaces, dashes and brackets ignored)."""
        return self._by_phone.get(_PHONE_PUNCTUATION.sub("", phone))

    def user_by_slack_id(self, slack_user_id: str) -> User | None:
        """The user with this Slack member id."""
        return self._by_slack.get(slack_user_id)

    def user_by_email(self, email: str) -> User | None:
        """The user with this email address (case-insensitive; the first if several)."""
        return self._by_email.get(email.lower())

    def schedule(self, name: str) -> Schedule | None:
        """The schedule of this name."""
        return self._schedules.get(name)

    def plan(self, name: str) -> Plan:
        """The compiled schedule; NotFound when there is no schedule of this name."""
        plan = self._plans.get(name)
        if plan is None:
            schedule = self._schedules.get(name)
            if schedule is None:
                raise NotFound(f"no schedule {name[:80]!r}", field="name")
            plan = self._plans[name] = Plan(schedule)
        return plan

    def oncall(self, schedule_name: str, at: datetime | None = None) -> OnCall:
        """Who is on call in the schedule at `at` (default now); NotFound for no schedule."""
        instant = _instant(at)
        slot = self.plan(schedule_name).at(instant)
        users = [self._by_name[slot.user]] if slot.user in self._by_name else []
        return OnCall(schedule_name, instant, users, slot.gap, slot.source, slot)

    def team_schedules(self, team: str) -> list[Schedule]:
        """The schedules that are the on-call of `team`, by name."""
        return sorted((s for s in self.schedules if s.team == team), key=lambda s: s.name)

    def team_oncall(self, team: str, at: datetime | None = None) -> list[User]:
        """Everyone on call at `at` in the team's schedules, each once, by schedule name."""
        found: dict[str, User] = {}
        for schedule in self.team_schedules(team):
            for user in self.oncall(schedule.name, at).users:
                found.setdefault(user.name, user)
        return list(found.values())


def _instant(at: datetime | None) -> datetime:
    if at is None:
        return utcnow()
    if at.tzinfo is None or at.utcoffset() is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


_last: tuple[UsersDocument, SchedulesDocument, Directory] | None = None


def directory(session: Session) -> Directory:
    """The users and schedules as stored now (one snapshot per stored version)."""
    global _last
    users, schedules = read_users(session), read_schedules(session)
    last = _last
    if last is not None and last[0] is users and last[1] is schedules:
        return last[2]
    made = Directory(users, schedules)
    _last = (users, schedules, made)
    return made


def oncall(session: Session, schedule_name: str, at: datetime | None = None) -> OnCall:
    """Who is on call in a schedule at `at` (default now); NotFound for no such schedule."""
    return directory(session).oncall(schedule_name, at)


def team_oncall(session: Session, team: str, at: datetime | None = None) -> list[User]:
    """Everyone on call at `at` in the schedules whose `team` is `team` (empty if none)."""
    return directory(session).team_oncall(team, at)


def user_by_name(session: Session, name: str) -> User | None:
    """The user of this name, or None."""
    return directory(session).user_by_name(name)


def user_by_phone(session: Session, phone: str) -> User | None:
    """The user with this phone number, or None (for replies to SMS and calls)."""
    return directory(session).user_by_phone(phone)


def user_by_slack_id(session: Session, slack_user_id: str) -> User | None:
    """The user with this Slack member id, or None (for Slack button clicks)."""
    return directory(session).user_by_slack_id(slack_user_id)


def user_by_email(session: Session, email: str) -> User | None:
    """The user with this email address, or None."""
    return directory(session).user_by_email(email)
