"""The reminder sweep runs at most every 30 s (or a quarter of the shortest interval)."""

from __future__ import annotations

import pytest

from incidents.notify import reminders
from incidents.notify.reminders import SweepPace
from incidents.notify.routing import RoutingTree
from incidents.notify.routing_config import RoutingSettings


def _tree(repeat: str | None) -> RoutingTree:
    route: dict[str, object] = {"receiver": "mail"}
    if repeat is not None:
        route["repeat_interval"] = repeat
    settings = RoutingSettings.model_validate(
        {"receivers": [{"name": "mail", "email": ["a@example.com"]}], "route": route}
    )
    return RoutingTree.from_settings(settings)


def test_a_sweep_is_due_again_only_after_its_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(reminders.time, "monotonic", lambda: clock[0])
    pace = SweepPace()
    hours = _tree("4h")
    assert pace.due(hours)
    clock[0] += 29
    assert not pace.due(hours)
    clock[0] += 1
    assert pace.due(hours)
    short = _tree("20s")  # a quarter of 20 s: every 5 s
    clock[0] += 30
    assert pace.due(short)
    clock[0] += 5
    assert pace.due(short)
    assert not SweepPace().due(_tree(None))  # no route reminds: never
