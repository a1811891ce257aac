"""The routing tree: which receivers hear about an incident, decided as Alertmanager decides.

A route matches a label set when all of its matchers do. Matching starts at the root
and goes depth first: children are tried in order, the first matching child ends the
search at its level unless it says `continue: true`, and a route none of whose children
match is itself the match. The result is every matched route, in tree order, each
carrying its effective options: receiver and timings are inherited from the parent
where a route leaves them out.

The timings mean, for an incident rather than an Alertmanager group (README "Routing"):
`group_wait` holds the opening page (unset: `correlation.open_hold_seconds`),
`group_interval` spaces the Slack message's updates, and `repeat_interval` reminds the
receiver of an incident still open and unacknowledged (unset: no reminders). `group_by`
is refused at validation: incidents are grouped by correlation, not by labels.

The labels a route sees are built by `routing_labels` from the incident (severity,
service, root cause and its team, status) and the labels all of its alerts share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from incidents.notify.routing_config import (
    ReceiverSettings,
    RouteSettings,
    RoutingSettings,
    parse_duration,
)
from incidents.routing.matchers import Matcher, matches_all, parse_matchers

if TYPE_CHECKING:
    from incidents.correlation.graph import ServiceGraph
    from incidents.models import Incident

CHANNELS = ("slack", "email", "sms", "voice", "webhook", "console")
# Labels computed from the incident; they win over alert labels of the same name.
DERIVED_LABELS = ("severity", "service", "root_service", "root_team", "status")


@dataclass(frozen=True)
class RouteOptions:
    """What a matched route asks for, after inheritance (None: not set on the way down)."""

    receiver: str
    # How long an opening page is held (None: correlation.open_hold_seconds).
    group_wait: timedelta | None = None
    # The least time between two updates of the incident's Slack message (None: no
    # spacing beyond Slack's edit budget).
    group_interval: timedelta | None = None
    # Remind the receiver this often while the incident is open and unacknowledged
    # (None: never).
    repeat_interval: timedelta | None = None

    def merged(self, other: RouteOptions) -> RouteOptions:
        """One receiver matched by two routes: the sooner of each timing."""
        return RouteOptions(
            self.receiver,
            _sooner(self.group_wait, other.group_wait),
            _sooner(self.group_interval, other.group_interval),
            _sooner(self.repeat_interval, other.repeat_interval),
        )


def _sooner(a: timedelta | None, b: timedelta | None) -> timedelta | None:
    if a is None or b is None:
        return a if b is None else b
    return min(a, b)


@dataclass(frozen=True)
class Route:
    """A compiled route: its matchers, effective options and children."""

    path: str
    matchers: tuple[Matcher, ...]
    options: RouteOptions
    continue_: bool = False
    routes: tuple[Route, ...] = ()

    @property
    def receiver(self) -> str:
        """The effective receiver's name."""
        return self.options.receiver

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """Every route of this subtree that the labels end at, in order (see module doc)."""
        return match_routes(self, labels)


@dataclass(frozen=True)
class Receiver:
    """A named receiver and its targets per channel."""

    name: str
    targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    digest: str | None = None
    # The escalation policy its pages climb until someone acknowledges (None: none).
    escalation_policy: str | None = None

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> Receiver:
        """Build from the validated `routing.receivers` entry."""
        targets = {
            channel: tuple(getattr(settings, channel))
            for channel in CHANNELS
            if getattr(settings, channel)
        }
        return cls(settings.name, targets, settings.digest, settings.escalation_policy)


def match_routes(route: Route, labels: Mapping[str, str]) -> list[Route]:
    """The routes `labels` end at below and including `route`, as Alertmanager's Match."""
    if not matches_all(list(route.matchers), labels):
        return []
    found: list[Route] = []
    for child in route.routes:
        below = match_routes(child, labels)
        found += below
        if below and not child.continue_:
            break
    return found or [route]


def _compile(settings: RouteSettings, parent: RouteOptions, path: str) -> Route:
    options = RouteOptions(
        receiver=settings.receiver or parent.receiver,
        group_wait=_or(settings.group_wait, parent.group_wait),
        group_interval=_or(settings.group_interval, parent.group_interval),
        repeat_interval=_or(settings.repeat_interval, parent.repeat_interval),
    )
    matchers: list[Matcher] = []
    for index, text in enumerate(settings.matchers):
        matchers += parse_matchers(text, where=f"{path}.matchers[{index}]")
    children = tuple(
        _compile(child, options, f"{path}.routes[{index}]")
        for index, child in enumerate(settings.routes)
    )
    return Route(path, tuple(matchers), options, settings.continue_, children)


def _or(text: str | None, inherited: timedelta | None) -> timedelta | None:
    return inherited if text is None else parse_duration(text)


@dataclass(frozen=True)
class RoutingTree:
    """The compiled `routing:` section: the root route and the receivers by name."""

    root: Route
    receivers: Mapping[str, Receiver]

    @classmethod
    def from_settings(cls, settings: RoutingSettings) -> RoutingTree:
        """Compile validated settings (references and matchers are already checked)."""
        root_receiver = settings.route.receiver or ""
        root = _compile(settings.route, RouteOptions(receiver=root_receiver), "route")
        receivers = {r.name: Receiver.from_settings(r) for r in settings.receivers}
        return cls(root, receivers)

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The matched routes for a label set, in tree order (never empty)."""
        return match_routes(self.root, labels)

    def receivers_for(self, labels: Mapping[str, str]) -> list[Receiver]:
        """The receivers to notify, in route order, each once."""
        return self.receivers_of(self.match(labels))

    def receivers_of(self, routes: Iterable[Route]) -> list[Receiver]:
        """The receivers of matched routes, in order, each once."""
        seen: dict[str, Receiver] = {}
        for route in routes:
            seen.setdefault(route.receiver, self.receivers[route.receiver])
        return list(seen.values())

    def routed(self, labels: Mapping[str, str]) -> list[tuple[Receiver, RouteOptions]]:
        """The receivers to notify, each once, with the timings its routes ask for."""
        options: dict[str, RouteOptions] = {}
        for route in self.match(labels):
            known = options.get(route.receiver)
            options[route.receiver] = known.merged(route.options) if known else route.options
        return [(self.receivers[name], opts) for name, opts in options.items()]

    def shortest_repeat(self) -> timedelta | None:
        """The shortest repeat_interval of any route (None: no route reminds)."""
        found: list[timedelta] = []
        stack = [self.root]
        while stack:
            route = stack.pop()
            if route.options.repeat_interval is not None:
                found.append(route.options.repeat_interval)
            stack.extend(route.routes)
        return min(found, default=None)


def common_labels(alert_labels: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The labels, with the same value, that every one of the alerts carries."""
    if not alert_labels:
        return {}
    shared = dict(alert_labels[0])
    for labels in alert_labels[1:]:
        shared = {k: v for k, v in shared.items() if labels.get(k) == v}
    return shared


def routing_labels(
    *,
    severity: str,
    status: str,
    roots: Sequence[str],
    candidates: Sequence[str],
    services: Sequence[str],
    team_of: Callable[[str], str | None],
    alert_labels: Sequence[Mapping[str, str]],
) -> dict[str, str]:
    """The flat label set routes match against, from an incident's plain facts."""
    labels = {str(k): str(v) for k, v in common_labels(alert_labels).items()}
    service = roots[0] if roots else (services[0] if services else "")
    root_service = candidates[0] if candidates else ""
    labels.update(
        severity=severity,
        service=service,
        root_service=root_service,
        # A symptom's team never counts: only the root cause's team can route by team.
        root_team=(team_of(root_service) or "") if root_service else "",
        status=status,
    )
    return labels


def graph_team_lookup(graph: ServiceGraph) -> Callable[[str], str | None]:
    """`team_of` for `routing_labels` from a ServiceGraph (None for unknown services)."""

    def team_of(service: str) -> str | None:
        if service not in graph:
            return None
        team = graph.node(service).get("team")
        return str(team) if team else None

    return team_of


def incident_routing_labels(
    incident: Incident, graph: ServiceGraph, alert_labels: Sequence[Mapping[str, str]]
) -> dict[str, str]:
    """`routing_labels` for a stored incident, its alerts' labels and the service graph."""
    return routing_labels(
        severity=incident.severity,
        status=incident.status,
        roots=incident.roots,
        candidates=incident.root_cause_candidates,
        services=incident.services,
        team_of=graph_team_lookup(graph),
        alert_labels=alert_labels,
    )


def describe_match(tree: RoutingTree, routes: Sequence[Route]) -> list[str]:
    """Lines for `incidents routing test --verbose`: each matched route and its targets."""
    lines: list[str] = []
    for route in routes:
        receiver = tree.receivers[route.receiver]
        lineage = _lineage(tree.root, route) or [route]
        shown = ", ".join(str(m) for step in lineage for m in step.matchers) or "(no matchers)"
        options = route.options
        lines.append(f"{receiver.name}")
        lines.append(f"  route: {route.path}  {{{shown}}}")
        lines.append(
            f"  group_wait: {_fmt(options.group_wait, 'the opening hold')}"
            f"  group_interval: {_fmt(options.group_interval, '-')}"
            f"  repeat_interval: {_fmt(options.repeat_interval, 'never')}"
        )
        for channel, targets in receiver.targets.items():
            lines.append(f"  {channel}: {', '.join(targets)}")
        if not receiver.targets:
            lines.append("  (no targets: notifications are dropped)")
        if receiver.digest:
            lines.append(f"  digest: {receiver.digest} (email)")
    return lines


def _lineage(root: Route, target: Route) -> list[Route] | None:
    """The routes from `root` down to `target`, both included; None when not below."""
    if root is target:
        return [root]
    for child in root.routes:
        below = _lineage(child, target)
        if below is not None:
            return [root, *below]
    return None


def _fmt(duration: timedelta | None, unset: str) -> str:
    """A duration the way the config writes one: 4h, 1h30m, 0s (`unset` for None)."""
    if duration is None:
        return unset
    total = duration // timedelta(milliseconds=1)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts) or "0s"


def parse_label_args(args: Sequence[str]) -> dict[str, str]:
    """`name=value` command-line arguments as a label set; ValueError says which is bad."""
    from incidents.exceptions import ValidationFailed
    from incidents.routing.matchers import Op, parse_matcher

    labels: dict[str, str] = {}
    for text in args:
        try:
            matcher = parse_matcher(text, where="label")
        except ValidationFailed as exc:
            raise ValueError(f"bad label {text!r}: {exc.message}; write name=value") from None
        if matcher.op is not Op.EQ:
            raise ValueError(f"bad label {text!r}: labels are given as name=value, not a matcher")
        if labels.get(matcher.name, matcher.value) != matcher.value:
            raise ValueError(f"label {matcher.name!r} is given twice with different values")
        labels[matcher.name] = matcher.value
    return labels
