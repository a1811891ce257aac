"""Users and schedules documents shared by the on-call API tests."""

from __future__ import annotations

import copy
from typing import Any

USERS: dict[str, Any] = {
    "users": [
        {
            "name": "alice",
            "email": "alice@example.com",
            "phone": "+15005550006",
            "slack_user_id": "U0ALICE01",
            "time_zone": "Europe/Berlin",
            "team": "database",
            "notification_rules": [
                {"channel": "slack", "after": "0m"},
                {"channel": "sms", "after": "1m"},
                {"channel": "voice", "after": "5m"},
            ],
        },
        {"name": "bob", "phone": "+15005550007", "slack_user_id": "U0BOB0002", "team": "database"},
        {"name": "carol", "email": "carol@example.com", "time_zone": "America/New_York"},
    ]
}

# Around the clock: alice and bob by the week; carol on weekday lunchtimes above them.
PRIMARY: dict[str, Any] = {
    "name": "primary",
    "time_zone": "Europe/Berlin",
    "team": "database",
    "layers": [
        {"users": ["alice", "bob"], "rotation": "1w", "handoff": "2026-11-02T09:00:00"},
        {
            "users": ["carol"],
            "rotation": "1d",
            "handoff": "2026-11-02T00:00:00",
            "restrictions": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "12:00", "to": "13:00"}
            ],
        },
    ],
}

# Business hours only: nights and weekends are gaps.
DAYTIME: dict[str, Any] = {
    "name": "daytime",
    "time_zone": "UTC",
    "layers": [
        {
            "users": ["carol"],
            "rotation": "1w",
            "handoff": "2026-11-02T00:00:00Z",
            "restrictions": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "17:00"}
            ],
        }
    ],
}


def schedules(*items: dict[str, Any]) -> dict[str, Any]:
    """A schedules document of (copies of) these schedules."""
    return {"schedules": [copy.deepcopy(item) for item in items]}
