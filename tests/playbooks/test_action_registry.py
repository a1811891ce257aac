"""Every registered action: strict parameters, a one-line description, a yes/no on repeats."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from pydantic import ValidationError

from incidents.playbooks.actions import get, names
from incidents.playbooks.actions.base import Params

EXTERNAL = (
    "http.request",
    "check",
    "wait",
    "script",
    "kubernetes.rollout_restart",
    "kubernetes.scale",
    "kubernetes.delete_pod",
)
# Valid parameters for each action; a new action adds its own here.
SAMPLES: dict[str, dict[str, Any]] = {
    "notify": {"message": "restarting checkout"},
    "incident.annotate": {"message": "restarted checkout"},
    "incident.set_status": {"status": "monitoring", "message": "watching"},
    "incident.resolve": {},
    "silence.create": {"duration": "30m", "matchers": ['service="checkout"']},
    "http.request": {"method": "POST", "url": "https://hooks.example/x", "body": {"a": 1}},
    "check": {"url": "http://svc.shop:8080/healthz", "attempts": 3},
    "wait": {"seconds": 30},
    "script": {"command": sys.executable, "args": ["-V"]},
    "kubernetes.rollout_restart": {"namespace": "shop", "deployment": "checkout"},
    "kubernetes.scale": {"namespace": "shop", "deployment": "checkout", "by": 2},
    "kubernetes.delete_pod": {"namespace": "shop", "label_selector": "app=checkout"},
}


def test_the_external_actions_are_registered() -> None:
    assert set(EXTERNAL) <= set(names())


@pytest.mark.parametrize("name", names())
def test_every_action_is_strict_and_describes_itself(name: str) -> None:
    action = get(name)
    assert action is not None and action.name == name
    assert issubclass(action.params, Params)
    assert action.params.model_config.get("extra") == "forbid"
    assert name in SAMPLES, f"add valid parameters for {name!r} to SAMPLES in this file"
    params = action.params.model_validate(SAMPLES[name])
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        action.params.model_validate({**SAMPLES[name], "no_such_parameter": 1})
    text = action.describe(params)
    assert text.strip() and "\n" not in text
    assert isinstance(action.idempotent(params), bool)
