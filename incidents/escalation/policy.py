"""Escalation policies: the document (`escalation:` in the config file, and
`PUT /api/v1/escalation-policies`) and what it means.

    {"policies": [{"name": "p0", "repeat": 1,
                   "levels": [{"wait": "5m", "targets": [{"schedule": "primary"},
                                                         {"slack_channel": "#incidents-critical"}]},
                              {"wait": "10m", "targets": [{"user": "carol"}]}]}]}

A level pages its targets and waits before the next level; after the last level the
whole ladder runs `repeat` more times. A level without a `wait` waits for the response
target of the incident's severity (acknowledge a P0 within 5 minutes, a P1 within 15 and
a P2 within 60). A target is one of: `user`, `schedule` (whoever is on call),
`slack_channel`, `team` (the on-call of that team's schedules) or `root_team_oncall: true`
(the on-call of the team that owns the incident's root-cause service).

A gap (a schedule or team with nobody on call) is never a silent no-page: the step pages
the first of these that reaches someone, and its timeline entry says which
(`incidents.escalation.directory.Directory.cover_gap`): the policy's optional `fallback`
targets; everyone in the rotations of the gapped schedule (of a team, of its schedules);
the users and Slack channels the policy's levels name; whoever is on call in any schedule.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from incidents.notify.routing_config import Duration, Name, parse_duration

# How long a level waits, by severity, when it names no wait (the response targets).
RESPONSE_TARGETS = {
    "P0": timedelta(minutes=5),
    "P1": timedelta(minutes=15),
    "P2": timedelta(minutes=60),
    "P3": timedelta(minutes=60),
}
# The shortest wait: short enough to try a policy quickly, long enough to answer a page.
MIN_WAIT = timedelta(seconds=5)
MAX_LEVELS = 20
MAX_REPEAT = 10


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    """Whom one level pages: exactly one of the fields."""

    user: Name | None = Field(default=None, description="A user, by name.")
    schedule: Name | None = Field(
        default=None, description="A schedule: whoever is on call in it at the step."
    )
    slack_channel: Name | None = Field(default=None, description="A Slack channel, e.g. #ops.")
    team: Name | None = Field(
        default=None, description="A team: whoever is on call in its schedules."
    )
    root_team_oncall: Literal[True] | None = Field(
        default=None,
        description="`true`: the on-call of the team that owns the incident's root cause.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        named = [k for k, v in self.model_dump().items() if v is not None]
        if len(named) != 1:
            kinds = "user, schedule, slack_channel, team or root_team_oncall"
            raise ValueError(f"a target names exactly one of {kinds}; this one names {named}")
        return self

    @property
    def kind(self) -> str:
        """The field this target sets."""
        return next(k for k, v in self.model_dump().items() if v is not None)

    @property
    def needs_oncall(self) -> bool:
        """Whether it can find nobody (a schedule or team with a gap)."""
        return self.kind in ("schedule", "team", "root_team_oncall")

    def describe(self) -> str:
        """How the timeline names it."""
        if self.root_team_oncall:
            return "the root-cause team's on-call"
        return f"{self.kind.replace('_', ' ')} {getattr(self, self.kind)}"


class Level(_Strict):
    """One rung: targets, and how long to wait for an acknowledgement before the next."""

    targets: Annotated[
        list[Target], Field(min_length=1, max_length=50, description="Whom this level pages.")
    ]
    wait: Duration | None = Field(
        default=None,
        description="How long to wait for an acknowledgement before the next level (at "
        "least 5s); default: 5m for a P0, 15m for a P1, 60m otherwise.",
    )

    @model_validator(mode="after")
    def _wait_long_enough(self) -> Level:
        if self.wait is not None and parse_duration(self.wait) < MIN_WAIT:
            raise ValueError(f"wait {self.wait} is shorter than 5s")
        return self

    def wait_for(self, severity: str) -> timedelta:
        """The wait, or the response target of the severity."""
        if self.wait is not None:
            return parse_duration(self.wait)
        return RESPONSE_TARGETS.get(severity, RESPONSE_TARGETS["P3"])


class Policy(_Strict):
    """An escalation policy."""

    name: Name = Field(description="Unique; routing receivers name it (escalation_policy).")
    levels: Annotated[
        list[Level],
        Field(min_length=1, max_length=MAX_LEVELS, description="The ladder, first rung first."),
    ]
    repeat: int = Field(
        default=0, ge=0, le=MAX_REPEAT, description="How many more times the ladder runs."
    )
    fallback: list[Target] = Field(
        default_factory=list,
        max_length=50,
        description="Users or Slack channels paged when a schedule or team has nobody on "
        "call; without one, everyone in the gapped schedule's rotations is paged.",
    )

    @model_validator(mode="after")
    def _fallback_never_gaps(self) -> Policy:
        if any(t.needs_oncall for t in self.fallback):
            raise ValueError("fallback targets must be users or Slack channels, which never gap")
        return self


class EscalationDocument(_Strict):
    """Every policy; what PUT replaces and GET returns."""

    policies: list[Policy] = Field(
        default_factory=list, max_length=500, description="Every policy, by unique name."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> EscalationDocument:
        seen: set[str] = set()
        for policy in self.policies:
            if policy.name in seen:
                raise ValueError(f"two policies are named {policy.name!r}")
            seen.add(policy.name)
        return self

    def by_name(self) -> dict[str, Policy]:
        """The policies by name."""
        return {p.name: p for p in self.policies}

    def references(self) -> list[tuple[tuple[Any, ...], str, str]]:
        """(path, kind, name) of every user, schedule and team the policies name."""
        found: list[tuple[tuple[Any, ...], str, str]] = []
        for p, policy in enumerate(self.policies):
            for lv, level in enumerate(policy.levels):
                for t, target in enumerate(level.targets):
                    if target.kind in ("user", "schedule", "team"):
                        path = ("policies", p, "levels", lv, "targets", t, target.kind)
                        found.append((path, target.kind, str(getattr(target, target.kind))))
            for t, target in enumerate(policy.fallback):
                if target.kind == "user":
                    found.append((("policies", p, "fallback", t, "user"), "user", str(target.user)))
        return found


def check_config(
    document: EscalationDocument | None,
    receivers: list[tuple[str, str | None]],
    users: list[str] | None,
    schedules: list[tuple[str, str | None]] | None,
) -> None:
    """The config file's cross-references: every receiver's policy is in the `escalation:`
    section, and the policies name users, schedules and teams of the `users:` and
    `schedules:` sections (each check only when its sections are in the file). Raises
    ValueError naming the path of the first problem."""
    if document is None:
        return
    names = document.by_name()
    for index, (receiver, policy) in enumerate(receivers):
        if policy is not None and policy not in names:
            raise ValueError(
                f"routing.receivers[{index}].escalation_policy: receiver {receiver} names "
                f"policy {policy!r}, which escalation.policies does not define"
            )
    known: dict[str, set[str]] = {}
    if users is not None:
        known["user"] = set(users)
    if schedules is not None:
        known["schedule"] = {name for name, _ in schedules}
        known["team"] = {team for _, team in schedules if team}
    for path, kind, name in document.references():
        if kind in known and name not in known[kind]:
            where = "escalation." + ".".join(str(p) for p in path)
            raise ValueError(f"{where}: no {kind} named {name!r} in the config file")
