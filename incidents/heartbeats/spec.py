"""Heartbeat definitions: the `heartbeats:` section of the config file and the API document.

Both are validated by the same models, so a problem is named by its path the same way:
`heartbeats[1].interval` in a 422, `config.yaml:14: heartbeats.1.interval` at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from incidents.exceptions import ValidationFailed
from incidents.notify.routing_config import Duration, parse_duration
from incidents.routing.matchers import Matcher, Op, matches_all, parse_matchers

# Names go in URLs (`/api/v1/heartbeats/{name}/ping`) and in a label value.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_HEARTBEATS = 1000
# The title's placeholder for how long no ping has arrived ("5 minutes").
ELAPSED = "{elapsed}"


def _no_nul(text: str) -> str:
    # PostgreSQL cannot store NUL characters in text or JSON.
    if "\x00" in text:
        raise ValueError("NUL characters are not allowed")
    return text


Text = Annotated[str, AfterValidator(_no_nul)]


def _matcher_text(text: str) -> str:
    _no_nul(text)
    try:
        found = parse_matchers(text, where="matcher")
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None
    if not found:
        raise ValueError("an empty matcher set matches every alert")
    return text


MatcherText = Annotated[str, AfterValidator(_matcher_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeartbeatAlert(_Strict):
    """An alert that is expected to keep firing: each delivery of it is a ping."""

    matchers: list[MatcherText] = Field(
        min_length=1,
        description='Alertmanager matchers, as for silences, e.g. `alertname="Watchdog"`; '
        "a firing alert that matches them all counts as a ping.",
        examples=[['alertname="Watchdog"']],
    )

    def compiled(self) -> list[Matcher]:
        """The matchers, parsed (they were validated already)."""
        return [m for text in self.matchers for m in parse_matchers(text)]


class HeartbeatSpec(_Strict):
    """One dead man's switch: pinged at least every `interval`, missed after `grace` more."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Its name: letters, digits, `.`, `_` and `-`, up to 128 characters.",
        examples=["alertmanager"],
    )
    interval: Duration = Field(
        description="How often a ping is expected: `30s`, `5m`, `1h`, `1h30m`.",
        examples=["1m"],
    )
    grace: Duration = Field(
        description="How much later than `interval` a ping may come before it counts as "
        "missed (`0s` for none).",
        examples=["4m"],
    )
    alert: HeartbeatAlert | None = Field(
        default=None,
        description="An alert that pings it whenever it is delivered firing (the "
        "`Watchdog`); without it, only `POST /api/v1/heartbeats/{name}/ping` does.",
    )
    severity: Literal["P0", "P1", "P2", "P3"] = Field(
        default="P1", description="The severity of the incident a missed heartbeat opens."
    )
    service: Text = Field(
        default="monitoring",
        min_length=1,
        max_length=255,
        description="The service that incident is about (routing and correlation see it).",
    )
    title: Text | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="The incident's title; `{elapsed}` in it becomes the time since the last "
        "ping. Default: `<Name> <alertname> has not arrived for {elapsed}: alerting may be "
        "broken` with an alert, `Heartbeat <name> has not been pinged for {elapsed}` without.",
    )

    def period(self) -> timedelta:
        """How long after a ping (or its definition) it is missed: interval plus grace."""
        return parse_duration(self.interval) + parse_duration(self.grace)


def _spec_problems(index: int, spec: HeartbeatSpec) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if parse_duration(spec.interval) <= timedelta(0):
        problems.append(((index, "interval"), "must be longer than 0"))
    if spec.alert is not None and matches_all(spec.alert.compiled(), {}):
        problems.append(
            (
                (index, "alert", "matchers"),
                "every matcher also matches an empty label set, so every alert would ping "
                'it; add one that selects the alert, such as alertname="Watchdog"',
            )
        )
    return problems


def _check_list(specs: list[HeartbeatSpec]) -> list[HeartbeatSpec]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.name in seen:
            problems.append(((index, "name"), f"heartbeat {spec.name!r} is defined twice"))
        seen.add(spec.name)
        problems.extend(_spec_problems(index, spec))
    if problems:
        details = [
            InitErrorDetails(
                type=PydanticCustomError("heartbeat", "{reason}", {"reason": reason}),
                loc=loc,
                input=None,
            )
            for loc, reason in problems
        ]
        raise ValidationError.from_exception_data("heartbeats", details)
    return specs


HeartbeatList = Annotated[
    list[HeartbeatSpec], Field(max_length=MAX_HEARTBEATS), AfterValidator(_check_list)
]


class HeartbeatsDocument(_Strict):
    """Every heartbeat; a PUT replaces them all."""

    heartbeats: HeartbeatList = Field(description="The heartbeats, by unique name.")


@dataclass(frozen=True)
class Heartbeat:
    """A definition ready to use: its durations and matchers parsed."""

    spec: HeartbeatSpec
    period: timedelta
    matchers: list[Matcher] = field(default_factory=list)

    @classmethod
    def of(cls, spec: HeartbeatSpec) -> Heartbeat:
        """Compile one validated spec."""
        matchers = spec.alert.compiled() if spec.alert is not None else []
        return cls(spec, spec.period(), matchers)

    @property
    def name(self) -> str:
        """The heartbeat's name."""
        return self.spec.name

    def title(self, elapsed: timedelta) -> str:
        """The title of the incident its miss opens, `elapsed` after the last ping."""
        text = self.spec.title
        if text is None:
            if self.matchers:
                what = _alertname(self.matchers) or "alert"
                head = self.name[:1].upper() + self.name[1:]
                text = f"{head} {what} has not arrived for {ELAPSED}: alerting may be broken"
            else:
                text = f"Heartbeat {self.name} has not been pinged for {ELAPSED}"
        return text.replace(ELAPSED, spoken(elapsed))


def _alertname(matchers: list[Matcher]) -> str | None:
    for matcher in matchers:
        if matcher.name == "alertname" and matcher.op is Op.EQ:
            return matcher.value
    return None


def spoken(span: timedelta) -> str:
    """A duration for people, rounded down: `45 seconds`, `5 minutes`, `2 hours 10 minutes`."""
    seconds = max(0, int(span.total_seconds()))

    def unit(count: int, name: str) -> str:
        return f"{count} {name}{'' if count == 1 else 's'}"

    if seconds < 120:
        return unit(seconds, "second") if seconds < 60 else unit(1, "minute")
    if seconds < 7200:
        return unit(seconds // 60, "minute")
    hours, minutes = divmod(seconds // 60, 60)
    if hours >= 48:
        return unit(hours // 24, "day")
    return unit(hours, "hour") + (f" {unit(minutes, 'minute')}" if minutes else "")


@dataclass(frozen=True)
class Definitions:
    """Every heartbeat of one stored version, indexed for the ingest hook."""

    version: int
    by_name: dict[str, Heartbeat]
    # Heartbeats whose matchers fix `alertname`, by that name: one dict look-up per alert.
    by_alertname: dict[str, list[Heartbeat]]
    # Heartbeats with matchers that do not fix `alertname`: tried on every alert.
    others: list[Heartbeat]

    @classmethod
    def of(cls, version: int, specs: list[HeartbeatSpec]) -> Definitions:
        """Compile a stored document."""
        by_name: dict[str, Heartbeat] = {}
        by_alertname: dict[str, list[Heartbeat]] = {}
        others: list[Heartbeat] = []
        for spec in specs:
            heartbeat = Heartbeat.of(spec)
            by_name[spec.name] = heartbeat
            if not heartbeat.matchers:
                continue
            name = _alertname(heartbeat.matchers)
            if name is None:
                others.append(heartbeat)
            else:
                by_alertname.setdefault(name, []).append(heartbeat)
        return cls(version, by_name, by_alertname, others)

    @property
    def watches_alerts(self) -> bool:
        """True when some heartbeat is pinged by alerts."""
        return bool(self.by_alertname or self.others)

    def pinged_by(self, labels: Mapping[str, str]) -> list[Heartbeat]:
        """The heartbeats a firing alert with these labels pings."""
        found = [
            h
            for h in self.by_alertname.get(labels.get("alertname", ""), ())
            if matches_all(h.matchers, labels)
        ]
        if self.others:
            found.extend(h for h in self.others if matches_all(h.matchers, labels))
        return found


EMPTY = Definitions(0, {}, {}, [])
