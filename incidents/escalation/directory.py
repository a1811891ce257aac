"""From a policy target to the notifications that reach people.

A user is reached by their personal rules (for example Slack at once, a text after a
minute, a call after five), each a notification due that long after the page; without
rules, by every contact they have at once: a text, a Slack direct message and an email.
A schedule or team pages whoever is on call at that moment; the root-cause team's
on-call is the team that owns the incident's first root-cause service in the graph.

A gap (nobody on call) pages, in this order, the first that reaches anyone: the policy's
`fallback`; everyone in the rotation layers of the gapped schedule (of a team, of every
schedule of the team), since one of them is most likely to know the service; the users
and Slack channels named anywhere in the policy's levels; whoever is on call right now in
any schedule. The timeline entry of the step names the one used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from incidents.correlation.store import current_graph
from incidents.escalation.policy import Policy, Target
from incidents.notify.routing import graph_team_lookup
from incidents.oncall.lookup import User, directory


@dataclass(frozen=True, slots=True)
class Page:
    """One notification a step sends: channel, target, delay after the step, and whom."""

    channel: str
    target: str
    delay: timedelta
    who: str

    def row(
        self, incident_id: int, key: str, event: str, receiver: str, now: datetime
    ) -> dict[str, Any]:
        """The outbox row."""
        return {
            "incident_id": incident_id,
            "event_key": key,
            "event": event,
            "receiver": receiver,
            "channel": self.channel,
            "target": self.target,
            "status": "pending",
            "attempts": 0,
            "not_before": now + self.delay,
            "created_at": now,
            "updated_at": now,
            "details": [f"paged {self.who}"],
        }

    def as_data(self) -> dict[str, Any]:
        """For the timeline entry."""
        return {
            "channel": self.channel,
            "target": self.target,
            "after_seconds": self.delay.total_seconds(),
            "who": self.who,
        }


def user_pages(user: User) -> list[Page]:
    """How to reach one person: their rules, or every contact at once."""
    contact = {
        "slack": user.slack_user_id,
        "sms": user.phone,
        "voice": user.phone,
        "email": user.email,
    }
    if user.notification_rules:
        return [
            Page(rule.channel, str(contact[rule.channel]), rule.delay, user.name)
            for rule in user.notification_rules
            if contact.get(rule.channel)
        ]
    return [
        Page(channel, str(contact[channel]), timedelta(0), user.name)
        for channel in ("sms", "slack", "email")
        if contact.get(channel)
    ]


class Escalating(Protocol):
    """What resolving a target reads of an incident (a stored one, or a sweep's row)."""

    @property
    def root_cause_candidates(self) -> list[str]: ...


class Directory:
    """Resolves targets against the stored users, schedules and graph, as they are when
    it is made. Answers are remembered per (target, time): a sweep asks the same few
    questions, at one time, for every incident of its batch."""

    def __init__(self, session: Session) -> None:
        self._people = directory(session)
        self._team_of = graph_team_lookup(current_graph(session))
        self._known: dict[tuple[Any, ...], tuple[list[Page], str]] = {}

    def resolve(self, target: Target, incident: Escalating, at: datetime) -> tuple[list[Page], str]:
        """The pages for one target at `at`, and how the timeline says it."""
        team = target.team
        if target.root_team_oncall:
            roots = list(incident.root_cause_candidates or [])
            team = self._team_of(roots[0]) if roots else None
            if not team:
                return [], "the root-cause team's on-call (the root cause has no team)"
        key = (target.slack_channel, target.user, target.schedule, team, at)
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = self._resolve(target, team, at)
        return list(known[0]), known[1]

    def _resolve(self, target: Target, team: str | None, at: datetime) -> tuple[list[Page], str]:
        if target.slack_channel is not None:
            return [Page("slack", target.slack_channel, timedelta(0), target.slack_channel)], (
                f"Slack {target.slack_channel}"
            )
        if target.user is not None:
            user = self._people.user_by_name(target.user)
            if user is None:
                return [], f"user {target.user} (no longer in the users document)"
            return user_pages(user), f"user {user.name}"
        if target.schedule is not None:
            if self._people.schedule(target.schedule) is None:
                return [], f"schedule {target.schedule} (no longer defined)"
            users = self._people.oncall(target.schedule, at).users
            return self._users(users), f"schedule {target.schedule} ({self._names(users)})"
        users = self._people.team_oncall(str(team), at)
        return self._users(users), f"team {team}'s on-call ({self._names(users)})"

    def cover_gap(
        self, target: Target, policy: Policy, incident: Escalating, at: datetime
    ) -> tuple[list[Page], str, str]:
        """Whom to page when `target` (a schedule or team) has nobody on call: the pages,
        how the timeline says it, and which rule chose them (`fallback`, `rotation`,
        `policy` or `anyone_on_call`; `none` only when there is no user at all)."""
        pages = [p for spare in policy.fallback for p in self.resolve(spare, incident, at)[0]]
        if pages:
            return pages, f"paged the fallback ({_who(pages)})", "fallback"
        none = "the policy names no fallback" if not policy.fallback else "its fallback is gone"
        users = self._rotation_users(target, incident)
        if users:
            said = f"{none}: paged everyone in the rotations ({self._names(users)})"
            return self._users(users), said, "rotation"
        named = [
            p
            for level in policy.levels
            for other in level.targets
            if other.kind in ("user", "slack_channel")
            for p in self.resolve(other, incident, at)[0]
        ]
        if named:
            return named, f"{none}: paged the policy's users and channels ({_who(named)})", "policy"
        found: dict[str, User] = {}
        for schedule in self._people.schedules:
            for user in self._people.oncall(schedule.name, at).users:
                found.setdefault(user.name, user)
        anyone = list(found.values())
        if anyone:
            said = f"{none}: paged whoever is on call anywhere ({self._names(anyone)})"
            return self._users(anyone), said, "anyone_on_call"
        return [], f"{none}, and there is nobody to page at all: NOBODY WAS PAGED", "none"

    def _team(self, target: Target, incident: Escalating) -> str | None:
        if target.team is not None:
            return target.team
        roots = list(incident.root_cause_candidates or [])
        return self._team_of(roots[0]) if roots else None

    def _rotation_users(self, target: Target, incident: Escalating) -> list[User]:
        """Everyone in the layers of the target's schedules, each once, in order."""
        if target.schedule is not None:
            found = self._people.schedule(target.schedule)
            schedules = [found] if found is not None else []
        else:
            team = self._team(target, incident)
            schedules = self._people.team_schedules(team) if team else []
        users: dict[str, User] = {}
        for schedule in schedules:
            for layer in schedule.layers:
                for name in layer.users:
                    user = self._people.user_by_name(name)
                    if user is not None:
                        users.setdefault(user.name, user)
        return list(users.values())

    @staticmethod
    def _users(users: list[User]) -> list[Page]:
        return [page for user in users for page in user_pages(user)]

    @staticmethod
    def _names(users: list[User]) -> str:
        return ", ".join(u.name for u in users) or "nobody"


def _who(pages: list[Page]) -> str:
    return ", ".join(dict.fromkeys(p.who for p in pages))
