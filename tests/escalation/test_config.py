"""The config file's `escalation:` section: checked against the routing receivers and the
`users:`/`schedules:` sections, and applied at start-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tests.conftest import AUTH, make_settings
from tests.escalation.ladder import LADDER, ROUTING, SCHEDULES, USERS


def settings(**overrides: Any) -> Any:
    return make_settings("sqlite://", **overrides)


def test_a_receiver_naming_an_undefined_policy_is_refused() -> None:
    routing = dict(ROUTING)
    routing["receivers"] = [
        {"name": "default", "console": ["stdout"]},
        {"name": "critical", "slack": ["#c"], "escalation_policy": "p9"},
    ]
    with pytest.raises(ValidationError, match=r"routing.receivers\[1\].escalation_policy"):
        settings(routing=routing, escalation={"policies": [LADDER]})


def test_policies_must_name_users_and_schedules_of_the_file() -> None:
    zed = dict(LADDER, levels=[{"targets": [{"user": "zed"}]}])
    with pytest.raises(ValidationError, match="no user named 'zed'"):
        settings(
            routing=ROUTING,
            users=USERS["users"],
            schedules=SCHEDULES["schedules"],
            escalation={"policies": [zed]},
        )
    # Without a users section in the file, the stored users are checked at start-up.
    settings(routing=ROUTING, escalation={"policies": [zed]})


def test_the_section_is_applied_at_start_up(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(
        db_url,
        routing=ROUTING,
        users=USERS["users"],
        schedules=SCHEDULES["schedules"],
        escalation={"policies": [LADDER]},
    )
    got = client.get("/api/v1/escalation-policies", headers=AUTH).json()
    assert [p["name"] for p in got["policies"]] == ["p0"]
