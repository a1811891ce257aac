"""The routing tree: Alertmanager's matching and inheritance, labels, validation with lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from incidents.config import load_settings
from incidents.correlation.graph import ServiceGraph
from incidents.exceptions import ConfigError
from incidents.notify.routing import (
    RoutingTree,
    common_labels,
    graph_team_lookup,
    incident_routing_labels,
    routing_labels,
)
from incidents.notify.routing_config import RoutingSettings, parse_duration
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "config.yaml"

TREE = """
receivers:
  - {name: default, console: [stdout]}
  - {name: team-x, slack: ["#x"]}
  - {name: team-x-pager, sms: ["+15005550006"]}
  - {name: audit, webhook: ["https://audit.example/hook"]}
  - {name: db, email: [db@example.com]}
route:
  receiver: default
  group_wait: 10s
  repeat_interval: 2h
  routes:
    - matchers: ['audit="yes"']
      receiver: audit
      continue: true
    - matchers: ['team="x"']
      receiver: team-x
      group_wait: 1m
      routes:
        - matchers: ['severity=~"P0|P1"']
          receiver: team-x-pager
          group_interval: 30s
        - matchers: ['severity="P2"']
    - matchers: ['team="x"']
      receiver: db
    - matchers: ['service=~"db-.*"']
      receiver: db
"""


def tree_of(text: str) -> RoutingTree:
    return RoutingTree.from_settings(RoutingSettings.model_validate(yaml.safe_load(text)))


def names(tree: RoutingTree, **labels: str) -> list[str]:
    return [route.receiver for route in tree.match(labels)]


def test_a_child_inherits_receiver_and_timings_and_overrides_its_own() -> None:
    tree = tree_of(TREE)
    [pager] = tree.match({"team": "x", "severity": "P0"})
    assert pager.path == "route.routes[1].routes[0]"
    assert pager.options.receiver == "team-x-pager"
    assert pager.options.group_interval == timedelta(seconds=30)  # its own
    assert pager.options.group_wait == timedelta(minutes=1)  # from its parent
    assert pager.options.repeat_interval == timedelta(hours=2)  # from the root
    [plain] = tree.match({"team": "x", "severity": "P2"})
    assert plain.path == "route.routes[1].routes[1]"
    assert plain.receiver == "team-x"  # no receiver of its own: the parent's
    assert plain.options.group_interval is None  # set nowhere: no spacing of updates
    [db] = tree.match({"service": "db-main"})
    assert db.options.group_wait == timedelta(seconds=10)


def test_unset_timings_keep_the_services_own_behaviour() -> None:
    tree = tree_of("receivers: [{name: a, console: [stdout]}]\nroute: {receiver: a}\n")
    [root] = tree.match({})
    # No group_wait: the opening hold (correlation.open_hold_seconds); no
    # repeat_interval: no reminders; no group_interval: updates as they come.
    assert (root.options.group_wait, root.options.group_interval) == (None, None)
    assert root.options.repeat_interval is None and tree.shortest_repeat() is None


def test_a_receiver_matched_twice_takes_the_sooner_timings() -> None:
    tree = tree_of(
        """
receivers: [{name: a, console: [stdout]}, {name: b, console: [stderr]}]
route:
  receiver: a
  repeat_interval: 4h
  routes:
    - {matchers: ['x="1"'], receiver: b, continue: true, group_wait: 1m}
    - {matchers: ['y="1"'], receiver: b, repeat_interval: 1h, group_wait: 5m}
"""
    )
    [(receiver, options)] = tree.routed({"x": "1", "y": "1"})
    assert receiver.name == "b"
    assert options.group_wait == timedelta(minutes=1)
    assert options.repeat_interval == timedelta(hours=1)
    assert tree.shortest_repeat() == timedelta(hours=1)


def test_the_first_matching_child_wins_unless_it_continues() -> None:
    tree = tree_of(TREE)
    # The second `team="x"` route never sees what the first one took.
    assert names(tree, team="x", severity="P0") == ["team-x-pager"]
    # `continue: true` on the audit route lets the later siblings match as well.
    assert names(tree, audit="yes", team="x", severity="P1") == ["audit", "team-x-pager"]
    assert names(tree, audit="yes", service="db-main") == ["audit", "db"]
    # A continuing match still counts as a match: the root is not added.
    assert names(tree, audit="yes") == ["audit"]
    receivers = tree.receivers_for({"audit": "yes", "team": "x", "severity": "P2"})
    assert [(r.name, dict(r.targets)) for r in receivers] == [
        ("audit", {"webhook": ("https://audit.example/hook",)}),
        ("team-x", {"slack": ("#x",)}),
    ]


def test_when_no_child_matches_the_route_itself_does() -> None:
    tree = tree_of(TREE)
    # team-x matches, neither of its children does (P3): team-x itself is the match.
    [route] = tree.match({"team": "x", "severity": "P3"})
    assert route.path == "route.routes[1]" and route.receiver == "team-x"
    # Nothing matches at all: the root, with its own options.
    [root] = tree.match({"team": "y"})
    assert root.path == "route" and root.receiver == "default"
    assert root.options.group_wait == timedelta(seconds=10)
    assert names(tree) == ["default"]


def test_a_receiver_named_by_two_matched_routes_is_notified_once() -> None:
    tree = tree_of(
        """
receivers: [{name: a, console: [stdout]}, {name: b, console: [stderr]}]
route:
  receiver: a
  routes:
    - {matchers: ['x="1"'], receiver: b, continue: true}
    - {matchers: ['y="1"'], receiver: b, continue: true}
    - {matchers: ['z="1"']}
"""
    )
    assert names(tree, x="1", y="1", z="1") == ["b", "b", "a"]
    assert [r.name for r in tree.receivers_for({"x": "1", "y": "1", "z": "1"})] == ["b", "a"]


@pytest.mark.parametrize("path", ["config.yaml", "compose/config.yaml"])
def test_every_shipped_config_routes_with_options_that_take_effect(path: str) -> None:
    # Both load (no group_by, no timing on a digest route), and every timing they set is
    # one the service acts on.
    tree = RoutingTree.from_settings(load_settings(str(ROOT / "examples" / path)).routing)
    assert tree.shortest_repeat() == timedelta(hours=4)


@pytest.fixture
def example() -> RoutingTree:
    return RoutingTree.from_settings(load_settings(str(EXAMPLE)).routing)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (
            "P0",
            {"slack": ("#incidents-critical",), "sms": ("+15005550006",)}
            | {"email": ("oncall@example.com",)},
        ),
        ("P1", {"slack": ("#incidents",), "email": ("oncall@example.com",)}),
        ("P2", {"slack": ("#incidents",)}),
        ("P3", {"email": ("oncall@example.com",)}),
    ],
)
def test_the_shipped_example_routes_each_severity(
    example: RoutingTree, severity: str, expected: Mapping[str, tuple[str, ...]]
) -> None:
    [receiver] = example.receivers_for({"severity": severity, "service": "api-gateway"})
    assert dict(receiver.targets) == expected
    assert receiver.digest == ("daily" if severity == "P3" else None)


@pytest.mark.parametrize("label", ["team", "category"])
def test_the_shipped_example_also_texts_security_incidents(
    example: RoutingTree, label: str
) -> None:
    receivers = example.receivers_for({"severity": "P2", label: "security"})
    assert [dict(r.targets) for r in receivers] == [
        {"sms": ("+15005550006",)},
        {"slack": ("#incidents",)},
    ]
    assert [r.name for r in example.receivers_for({"severity": "P2", label: "secur"})] == [
        "warning"
    ]


def _labels(
    roots: list[str],
    candidates: list[str],
    alerts: list[dict[str, str]] | None = None,
    team_of: Callable[[str], str | None] | None = None,
) -> dict[str, str]:
    graph = ServiceGraph.from_file(ROOT / "examples" / "services.yaml")
    return routing_labels(
        severity="P1",
        status="open",
        roots=roots,
        candidates=candidates,
        services=[*roots, "user-service", "database-postgres"],
        team_of=team_of or graph_team_lookup(graph),
        alert_labels=alerts or [],
    )


def test_routing_labels_name_severity_service_root_and_its_team() -> None:
    labels = _labels(["user-service"], ["database-postgres", "user-service"])
    assert labels == {
        "severity": "P1",
        "service": "user-service",
        "root_service": "database-postgres",
        "root_team": "data-platform",
        "status": "open",
    }
    empty = routing_labels(
        severity="P3",
        status="resolved",
        roots=[],
        candidates=[],
        services=["web"],
        team_of=lambda _: "nobody",
        alert_labels=[],
    )
    assert empty["service"] == "web" and empty["root_service"] == empty["root_team"] == ""
    # A root cause the graph does not know has no team.
    assert _labels(["x"], ["unknown-svc"])["root_team"] == ""


def test_a_team_route_follows_the_root_causes_team_not_a_symptoms() -> None:
    tree = tree_of(
        """
receivers: [{name: default, console: [stdout]}, {name: data, slack: ["#data"]}]
route:
  receiver: default
  routes: [{matchers: ['root_team="data-platform"'], receiver: data}]
"""
    )
    # The database is the root cause: its team hears about it.
    rooted = _labels(["user-service"], ["database-postgres"])
    assert names(tree, **rooted) == ["data"]
    # The database only shows a symptom (it is among the services, not the root).
    symptom = _labels(["user-service"], ["user-service"])
    assert symptom["root_team"] == "identity"
    assert names(tree, **symptom) == ["default"]


def test_labels_of_a_stored_incident() -> None:
    from datetime import UTC, datetime

    from incidents.models import Incident

    now = datetime.now(UTC)
    incident = Incident(
        severity="P0",
        title="t",
        opened_at=now,
        updated_at=now,
        first_alert_at=now,
        last_alert_at=now,
        services=["api-gateway", "database-postgres"],
        roots=["api-gateway"],
        root_cause_candidates=["database-postgres"],
    )
    graph = ServiceGraph.from_file(ROOT / "examples" / "services.yaml")
    labels = incident_routing_labels(incident, graph, [{"env": "prod"}])
    assert labels == {
        "env": "prod",
        "severity": "P0",
        "service": "api-gateway",
        "root_service": "database-postgres",
        "root_team": "data-platform",
        "status": "open",
    }


def test_only_labels_every_alert_shares_are_visible() -> None:
    alerts = [
        {"alertname": "Down", "team": "security", "env": "prod", "severity": "critical"},
        {"alertname": "Slow", "env": "prod", "severity": "critical"},
    ]
    assert common_labels(alerts) == {"env": "prod", "severity": "critical"}
    assert common_labels([]) == {}
    labels = _labels(["api-gateway"], ["api-gateway"], alerts)
    assert "team" not in labels and labels["env"] == "prod"
    # The incident's own severity wins over the alerts' label of the same name.
    assert labels["severity"] == "P1"
    tree = RoutingTree.from_settings(load_settings(str(EXAMPLE)).routing)
    assert [r.name for r in tree.receivers_for(labels)] == ["high"]
    both = [dict(alert, team="security") for alert in alerts]
    labels = _labels(["api-gateway"], ["api-gateway"], both)
    assert [r.name for r in tree.receivers_for(labels)] == ["security", "high"]


def test_durations_read_as_prometheus_reads_them() -> None:
    assert parse_duration("30s") == timedelta(seconds=30)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1d") == timedelta(days=1)
    assert parse_duration("1w") == timedelta(days=7)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert parse_duration("0") == parse_duration("0s") == timedelta(0)
    for bad in ("", "30", "5x", "1m1h", "-1s", "1.5h", "h", "\u0663s"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_without_a_routing_section_everything_goes_to_the_console(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("log_level: INFO\n")
    tree = RoutingTree.from_settings(load_settings(str(config)).routing)
    [receiver] = tree.receivers_for({"severity": "P0"})
    assert receiver.name == "console" and dict(receiver.targets) == {"console": ("stdout",)}


GOOD_RECEIVERS = """\
routing:
  receivers:
    - name: a
      console: [stdout]
    - name: b
      sms: ["+15005550006"]
"""


@pytest.mark.parametrize(
    ("route", "line", "field", "reason"),
    [
        ("  route:\n    receiver: a\n    colour: red\n", 9, "routing.route.colour", "Extra inputs"),
        (
            "  route:\n    receiver: a\n    routes:\n      - receiver: nobody\n",
            10,
            "routing.route.routes.0.receiver",
            "undefined receiver 'nobody'",
        ),
        (
            "  route:\n    receiver: a\n    routes:\n      - matchers: ['x=~\"(a\"']\n",
            10,
            "routing.route.routes.0.matchers.0",
            "invalid regular expression",
        ),
        (
            '  route:\n    receiver: a\n    routes:\n      - matchers: [ok="1", \'x=="1"\']\n',
            10,
            "routing.route.routes.0.matchers.1",
            "bad matcher",
        ),
        (
            "  route:\n    receiver: a\n    group_wait: 5x\n",
            9,
            "group_wait",
            "not a valid duration",
        ),
        ("  route:\n    receiver: a\n    group_wait: 30\n", 9, "group_wait", "has no unit"),
        ("  route:\n    receiver: a\n    repeat_interval: 0s\n", 9, "repeat_", "cannot be zero"),
        ("  route:\n    group_wait: 1m\n", 7, "routing.route", "needs a receiver"),
        ('  route:\n    receiver: a\n    matchers: [x="1"]\n', 9, "route.matchers", "root"),
        (
            "  route:\n    receiver: a\n    group_by: [root_service]\n",
            9,
            "routing.route.group_by",
            "grouped by correlation",
        ),
        (
            "    - {name: d, email: [d@example.com], digest: daily}\n"
            "  route:\n    receiver: a\n    routes:\n      - receiver: d\n        group_wait: 5m\n",
            12,
            "routing.route.routes.0.group_wait",
            "daily digest: group_wait does nothing",
        ),
    ],
)
def test_every_route_error_names_the_file_and_line(
    tmp_path: Path, route: str, line: int, field: str, reason: str
) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(GOOD_RECEIVERS + route)
    with pytest.raises(ConfigError) as err:
        load_settings(str(config))
    assert f"{config}:{line}: " in err.value.message
    assert field in err.value.message and reason in err.value.message


@pytest.mark.parametrize(
    ("receiver", "line", "field", "reason"),
    [
        ("    - name: a\n", 7, "routing.receivers.2.name", "receiver 'a' is defined twice"),
        ("    - name: c\n      sms: ['5550006']\n", 8, "receivers.2.sms.0", "E.164"),
        ("    - name: c\n      voice: ['+0123456789']\n", 8, "receivers.2.voice.0", "E.164"),
        ("    - name: c\n      voice: ['+1" + "\u0665" * 7 + "']\n", 8, "voice.0", "E.164"),
        ("    - name: c\n      webhook: ['ftp://x.example']\n", 8, "webhook.0", "http://"),
        ("    - name: c\n      webhook: ['https://']\n", 8, "webhook.0", "with a host"),
        ("    - name: c\n      email: [nobody]\n", 8, "receivers.2.email.0", "email address"),
        ("    - name: c\n      pager: [x]\n", 8, "receivers.2.pager", "Extra inputs"),
        ("    - name: c\n      slack: ['#c']\n      digest: daily\n", 9, "digest", "by email"),
        ("    - name: c\n      email: [c@example.com]\n      digest: weekly\n", 9, "digest", ""),
        (
            "    - name: c\n      sms: ['+15005550006']\n      templates:\n        sms:\n"
            "          text: '{{ titel }} {{ ack_code }}'\n",
            11,
            "receivers.2.templates.sms.text",
            "unknown variable(s) titel",
        ),
        (
            "    - name: c\n      email: [c@example.com]\n      templates:\n        email:\n"
            "          subject: ok\n"
            "          html: |\n"
            "            <p>{% if event == 'resolved' %}{{ oops }}{% endif %}</p>\n",
            12,
            "receivers.2.templates.email.html",
            "oops",
        ),
        (
            "    - name: c\n      slack: ['#c']\n      templates:\n        slack:\n"
            "          title: '{{ title'\n",
            11,
            "receivers.2.templates.slack.title",
            "does not compile",
        ),
        (
            "    - name: c\n      voice: ['+15005550006']\n      templates:\n"
            "        voice: {say: '{{ severity.__class__.__mro__ }}'}\n",
            10,
            "receivers.2.templates.voice.say",
            "unsafe",
        ),
        (
            "    - name: c\n      sms: ['+15005550006']\n      templates:\n"
            "        slack: {title: '{{ title }}'}\n",
            10,
            "receivers.2.templates.slack",
            "no slack targets",
        ),
        (
            "    - name: c\n      sms: ['+15005550006']\n      templates:\n"
            "        sms: {body: '{{ title }}'}\n",
            10,
            "receivers.2.templates.sms.body",
            "Extra inputs",
        ),
    ],
)
def test_every_receiver_error_names_the_file_and_line(
    tmp_path: Path, receiver: str, line: int, field: str, reason: str
) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(GOOD_RECEIVERS + receiver + "  route:\n    receiver: a\n")
    with pytest.raises(ConfigError) as err:
        load_settings(str(config))
    assert f"{config}:{line}: " in err.value.message
    assert field in err.value.message and reason in err.value.message
