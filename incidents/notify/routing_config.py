"""The `routing:` section of the config file: receivers and an Alertmanager-style route tree.

Only validation lives here; `incidents.notify.routing` compiles the tree and matches.
Every problem is raised as a pydantic error whose location is the offending key or list
item, so `incidents.config` can name the file and line of each one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from incidents.notify.receiver_templates import ReceiverTemplates

# Prometheus' duration grammar (Alertmanager's `model.Duration`): each unit at most once,
# largest first. A year is 365 days there, and so it is here.
_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?",
    re.ASCII,  # `\d` would also take other scripts' digits
)
_UNIT_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
# Anything longer is a typo, and timedelta stops at about 2.7 million years anyway.
_MAX_MILLIS = 100 * 365 * 86_400_000
_E164 = re.compile(r"\+[1-9]\d{6,14}", re.ASCII)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
GROUP_BY_REFUSED = (
    "group_by is not supported: incidents are grouped by correlation (alerts on related "
    "services in the service graph join one incident), not by label values; remove it"
)


def parse_duration(text: str) -> timedelta:
    """Read a Go/Prometheus-style duration such as `30s`, `5m`, `4h`, `1d` or `1h30m`."""
    found = _DURATION.fullmatch(text)
    if text != "0" and (found is None or not any(found.groups())):
        raise ValueError(
            f"not a valid duration: {text!r} (write a number and a unit, such as 30s, 5m, 4h, 1d)"
        )
    millis = 0
    if found is not None:
        millis = sum(int(n) * unit for n, unit in zip(found.groups(), _UNIT_MS, strict=True) if n)
    if millis > _MAX_MILLIS:
        raise ValueError(f"duration {text!r} is longer than 100 years")
    return timedelta(milliseconds=millis)


def _duration_text(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # YAML reads a bare `0` as a number; Prometheus accepts "0", and nothing unitless.
        if value == 0:
            return "0"
        raise ValueError(f"not a valid duration: {value!r} has no unit (such as {value}s)")
    return value


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, BeforeValidator(_duration_text), AfterValidator(_check_duration)]


def _check_phone(text: str) -> str:
    if not _E164.fullmatch(text):
        raise ValueError(f"{text!r} is not an E.164 phone number such as +15005550006")
    return text


def _check_email(text: str) -> str:
    if not _EMAIL.fullmatch(text):
        raise ValueError(f"{text!r} is not an email address")
    return text


def _check_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        good = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a malformed port or IPv6 address
        good = False
    if not good or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not an http:// or https:// URL with a host")
    return text


def _check_name(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _check_matchers(text: str) -> str:
    from incidents.exceptions import ValidationFailed
    from incidents.routing.matchers import parse_matchers

    try:
        # Each entry may hold several comma-separated matchers, as in Alertmanager.
        parse_matchers(text, where="matcher")
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None
    return text


Phone = Annotated[str, AfterValidator(_check_phone)]
Email = Annotated[str, AfterValidator(_check_email)]
WebhookUrl = Annotated[str, AfterValidator(_check_url)]
Name = Annotated[str, AfterValidator(_check_name)]
MatcherText = Annotated[str, AfterValidator(_check_matchers)]


class _Strict(BaseModel):
    # `continue` is a Python keyword: the field is `continue_`, shown as `continue`.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, serialize_by_alias=True, frozen=True
    )


class ReceiverSettings(_Strict):
    """A named set of targets, per channel."""

    name: Name
    slack: list[Name] = Field(default_factory=list)
    email: list[Email] = Field(default_factory=list)
    sms: list[Phone] = Field(default_factory=list)
    voice: list[Phone] = Field(default_factory=list)
    webhook: list[WebhookUrl] = Field(default_factory=list)
    console: list[Name] = Field(default_factory=list)
    # One email a day listing the events, instead of one email per event.
    digest: Literal["daily"] | None = None
    # The escalation policy (by name) that pages climb until someone acknowledges.
    escalation_policy: Name | None = None
    # This receiver's own wording, per channel (incidents.notify.receiver_templates).
    templates: ReceiverTemplates | None = None

    @model_validator(mode="after")
    def _digest_needs_email(self) -> ReceiverSettings:
        if self.digest is not None and not self.email:
            _fail([(("digest",), "a digest is sent by email: list at least one email address")])
        if self.digest is not None and self.escalation_policy is not None:
            _fail([(("escalation_policy",), "a digest receiver pages no one to escalate")])
        if self.templates is not None:
            problems: list[tuple[tuple[str | int, ...], str]] = []
            for channel in self.templates.by_channel():
                if self.digest is not None:
                    problems.append(
                        (
                            ("templates", channel),
                            "a digest is one email listing many "
                            "incidents, in the built-in wording: it takes no templates",
                        )
                    )
                elif not getattr(self, channel):
                    problems.append(
                        (
                            ("templates", channel),
                            f"the receiver has no {channel} targets for these templates",
                        )
                    )
            _fail(problems)
        return self


class RouteSettings(_Strict):
    """One node of the route tree; unset options are inherited from the parent."""

    receiver: str | None = None
    matchers: list[MatcherText] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[Name] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    routes: list[RouteSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _own_rules(self) -> RouteSettings:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name in ("group_interval", "repeat_interval"):
            value = getattr(self, name)
            if value is not None and parse_duration(value) == timedelta(0):
                problems.append(((name,), f"{name} cannot be zero"))
        if self.group_by is not None:
            problems.append((("group_by",), GROUP_BY_REFUSED))
        if self.receiver is not None and not self.receiver.strip():
            problems.append((("receiver",), "must not be empty (leave it out to inherit)"))
        _fail(problems)
        return self

    def walk(
        self, path: tuple[str | int, ...] = ()
    ) -> Iterator[tuple[tuple[str | int, ...], RouteSettings]]:
        """Every route of the subtree with its location under this one, depth first."""
        yield path, self
        for index, child in enumerate(self.routes):
            yield from child.walk((*path, "routes", index))


class RoutingSettings(_Strict):
    """Receivers and the route tree that picks them."""

    receivers: list[ReceiverSettings]
    route: RouteSettings

    @model_validator(mode="after")
    def _references(self) -> RoutingSettings:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        names: set[str] = set()
        for index, receiver in enumerate(self.receivers):
            if receiver.name in names:
                problems.append(
                    (("receivers", index, "name"), f"receiver {receiver.name!r} is defined twice")
                )
            names.add(receiver.name)
        root = self.route
        if root.receiver is None:
            problems.append((("route",), "the root route needs a receiver (the default one)"))
        if root.matchers:
            problems.append((("route", "matchers"), "the root route cannot have matchers"))
        digests = {r.name for r in self.receivers if r.digest is not None}
        for path, node in _effective(root, root.receiver or ""):
            timings = [n for n in _TIMINGS if getattr(node.settings, n) is not None]
            if node.receiver in digests and timings:
                problems.append(
                    (
                        (*path, timings[0]),
                        f"receiver {node.receiver!r} is a daily digest: {timings[0]} does "
                        "nothing for it",
                    )
                )
        for path, route in root.walk(("route",)):
            if route.receiver is not None and route.receiver not in names:
                known = ", ".join(sorted(names)) or "none"
                problems.append(
                    (
                        (*path, "receiver"),
                        f"undefined receiver {route.receiver!r} (receivers: {known})",
                    )
                )
        _fail(problems)
        return self


_TIMINGS = ("group_wait", "group_interval", "repeat_interval")


class _Effective(NamedTuple):
    settings: RouteSettings
    receiver: str


def _effective(
    route: RouteSettings, inherited: str, path: tuple[str | int, ...] = ("route",)
) -> Iterator[tuple[tuple[str | int, ...], _Effective]]:
    """Every route with the receiver it ends up with (its own or its parent's)."""
    receiver = route.receiver or inherited
    yield path, _Effective(route, receiver)
    for index, child in enumerate(route.routes):
        yield from _effective(child, receiver, (*path, "routes", index))


def default_routing() -> RoutingSettings:
    """Everything to one console receiver: what runs when the config has no `routing:`."""
    return RoutingSettings(
        receivers=[ReceiverSettings(name="console", console=["stdout"])],
        route=RouteSettings(receiver="console"),
    )


def _fail(problems: list[tuple[tuple[str | int, ...], str]]) -> None:
    """Raise one pydantic error per problem, each located at its own key or item."""
    if not problems:
        return
    details = [
        InitErrorDetails(
            type=PydanticCustomError("routing", "{reason}", {"reason": reason}),
            loc=loc,
            input=None,
        )
        for loc, reason in problems
    ]
    raise ValidationError.from_exception_data("routing", details)
