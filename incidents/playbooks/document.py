"""The playbook file: its schema, and the checks that make a bad file fail at start-up.

    id: service-down
    description: Restart a service that is down, scale it up if the restart does not help
    triggers:
      - event: incident_opened
        matchers: ['alertname=~"ServiceDown|KubePodCrashLooping"', 'severity="critical"']
    conditions: ["incident.severity in ['P0', 'P1']"]
    policy: {max_runs_per_incident: 1, max_runs_per_hour: 10, cooldown: 10m, approval: none}
    steps:
      - name: restart
        action: kubernetes.rollout_restart
        params:
          namespace: '{{ incident.labels.namespace }}'
          deployment: '{{ incident.root_service }}'
        timeout: 30s
        retries: {attempts: 3, backoff: 5s}
        on_failure: stop            # or continue, or compensate (with `compensate:`)
      - name: scale_up
        if: steps.check.failed
        approval: required
        ...

Besides the schema, `check_playbook` verifies what pydantic cannot: the action exists,
its parameters fit its model (a templated value is checked once rendered), every
template and condition compiles, and `if` reads only steps that come before it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from incidents.exceptions import ValidationFailed
from incidents.notify.routing_config import Duration, parse_duration
from incidents.routing.matchers import parse_matchers

from . import templates
from .actions import get as get_action
from .actions import names as action_names

# The events a trigger may name, and the timeline kinds they stand for.
EVENTS = ("incident_opened", "severity_raised", "alert_firing", "resolved")
Event = Literal["incident_opened", "severity_raised", "alert_firing", "resolved"]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
MAX_STEPS = 50
# A compensating step's position: after every ordinary step.
COMPENSATION_OFFSET = 1000


def _identifier(text: str) -> str:
    if not _IDENT.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a step name: use letters, digits and _ (templates read it as "
            "steps.NAME)"
        )
    return text


def _playbook_id(text: str) -> str:
    if not _ID.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a playbook id: lower-case letters, digits, '-', '_' and '.'"
        )
    return text


StepName = Annotated[str, AfterValidator(_identifier)]
PlaybookId = Annotated[str, AfterValidator(_playbook_id)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Trigger(_Strict):
    """An event, and matchers on the incident and its alerts."""

    event: Event
    # Checked by `check_playbook`, with the other problems of the file.
    matchers: list[str] = Field(default_factory=list)


class Retries(_Strict):
    """How often a step is tried, and how long to wait between tries (doubling)."""

    attempts: int = Field(default=1, ge=1, le=10)
    backoff: Duration = "5s"
    max_backoff: Duration = "5m"


class Compensation(_Strict):
    """A step to run when its step failed, before the run stops."""

    name: StepName
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration | None = None


class Step(_Strict):
    """One step: an action, its templated parameters, and what to do when it fails."""

    name: StepName
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration | None = None
    retries: Retries = Field(default_factory=Retries)
    if_: str | None = Field(default=None, alias="if")
    on_failure: Literal["stop", "continue", "compensate"] = "stop"
    compensate: Compensation | None = None
    approval: Literal["none", "required"] = "none"

    @model_validator(mode="after")
    def _compensation(self) -> Step:
        if self.on_failure == "compensate" and self.compensate is None:
            raise ValueError("on_failure: compensate needs a `compensate:` step")
        if self.compensate is not None and self.on_failure != "compensate":
            raise ValueError("`compensate:` is only run with on_failure: compensate")
        return self


class Policy(_Strict):
    """How often the playbook may run, and whether a person must approve it."""

    max_runs_per_incident: int = Field(default=1, ge=1, le=100)
    max_runs_per_hour: int = Field(default=10, ge=1, le=10_000)
    cooldown: Duration = "0s"
    approval: Literal["none", "required"] = "none"
    dry_run: bool = False


class Playbook(_Strict):
    """A playbook file."""

    id: PlaybookId
    description: str = Field(min_length=1, max_length=2000)
    triggers: list[Trigger] = Field(default_factory=list)
    conditions: list[str] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _unique_steps(self) -> Playbook:
        seen: set[str] = set()
        for step in self.steps:
            for name in (step.name, step.compensate.name if step.compensate else None):
                if name is None:
                    continue
                if name in seen:
                    raise ValueError(f"two steps are named {name!r}")
                seen.add(name)
        return self

    def cooldown_seconds(self) -> float:
        """The policy's cooldown in seconds."""
        return parse_duration(self.policy.cooldown).total_seconds()

    def needs_approval(self, position: int) -> bool:
        """Whether the step at `position` waits for a person (the policy gates the first)."""
        step = self.steps[position]
        return step.approval == "required" or (position == 0 and self.policy.approval == "required")


Problem = tuple[tuple[str | int, ...], str]


def check_playbook(playbook: Playbook, max_timeout: float) -> list[Problem]:
    """What is wrong with a schema-valid playbook, each with its field path."""
    problems: list[Problem] = []
    for t, trigger in enumerate(playbook.triggers):
        for m, text in enumerate(trigger.matchers):
            try:
                parse_matchers(text, where="matcher")
            except ValidationFailed as exc:
                problems.append((("triggers", t, "matchers", m), exc.message))
    for i, text in enumerate(playbook.conditions):
        problems += _expression(("conditions", i), text)
    names_before: set[str] = set()
    for i, step in enumerate(playbook.steps):
        path: tuple[str | int, ...] = ("steps", i)
        problems += _action(path, step.action, step.params, step.timeout, max_timeout)
        if step.if_ is not None:
            problems += _expression((*path, "if"), step.if_)
            problems += _later_steps((*path, "if"), step.if_, step.name, names_before)
        if step.compensate is not None:
            c = step.compensate
            problems += _action((*path, "compensate"), c.action, c.params, c.timeout, max_timeout)
        names_before.add(step.name)
    return problems


def _action(
    path: tuple[str | int, ...],
    name: str,
    params: dict[str, Any],
    timeout: str | None,
    max_timeout: float,
) -> list[Problem]:
    action = get_action(name)
    if action is None:
        known = ", ".join(action_names())
        return [((*path, "action"), f"unknown action {name!r}; known actions: {known}")]
    problems: list[Problem] = []
    if timeout is not None and parse_duration(timeout).total_seconds() > max_timeout:
        problems.append(
            ((*path, "timeout"), f"{timeout} is longer than the {max_timeout:g}s maximum")
        )
    templated: set[str] = set()
    for key, value in params.items():
        for text in _strings(value):
            if templates.is_template(text):
                templated.add(key)
                try:
                    templates.check(text)
                except templates.TemplateProblem as exc:
                    problems.append(((*path, "params", key), str(exc)))
    try:
        action.params.model_validate(params)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            # A templated value is checked once rendered; its type is unknown until then.
            if loc and loc[0] in templated:
                continue
            message = error["msg"].removeprefix("Value error, ")
            problems.append(((*path, "params", *loc), message))
    return problems


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _expression(path: tuple[str | int, ...], text: str) -> list[Problem]:
    try:
        templates.check_expression(text)
    except templates.TemplateProblem as exc:
        return [(path, str(exc))]
    return []


def _later_steps(
    path: tuple[str | int, ...], text: str, own: str, before: set[str]
) -> list[Problem]:
    # `steps.NAME` in an `if` must name a step that has run by then.
    wrong = [
        name
        for name in re.findall(r"steps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)", text)
        if name not in before
    ]
    if not wrong:
        return []
    which = "itself" if wrong[0] == own else f"step {wrong[0]!r}, which has not run by then"
    return [(path, f"the condition reads {which}")]
