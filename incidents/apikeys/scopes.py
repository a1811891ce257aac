"""The scopes an API key can carry, and what each allows.

`admin` implies every other scope. No other scope implies another: a sender's key
(`alerts:write`) cannot read incidents, and a key that acknowledges (`incidents:write`)
needs `incidents:read` as well to list them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from incidents.exceptions import ValidationFailed

ALERTS_WRITE: Final = "alerts:write"
INCIDENTS_READ: Final = "incidents:read"
INCIDENTS_WRITE: Final = "incidents:write"
CONFIG_WRITE: Final = "config:write"
ADMIN: Final = "admin"

# Every scope, in the order documentation lists them, with what it allows.
SCOPES: Final[dict[str, str]] = {
    ALERTS_WRITE: "send alerts (the ingest endpoints) and ping heartbeats",
    INCIDENTS_READ: "read alerts, incidents, notifications, silences, the graph, users, "
    "schedules, policies and heartbeats",
    INCIDENTS_WRITE: "act on incidents (acknowledge, resolve, notes, assign, merge, ...) "
    "and create or expire silences",
    CONFIG_WRITE: "replace the service graph, escalation policies, users, schedules "
    "(and their overrides), heartbeats and playbooks; clear unreachable targets",
    ADMIN: "manage API keys; implies every other scope",
}


def allows(granted: Collection[str], needed: str) -> bool:
    """True when scopes `granted` allow an operation that needs `needed`."""
    return needed in granted or ADMIN in granted


def check_scopes(scopes: Iterable[str], field: str = "scopes") -> list[str]:
    """The scopes without repeats, in SCOPES order; ValidationFailed names an unknown one."""
    given = list(scopes)
    for index, scope in enumerate(given):
        if scope not in SCOPES:
            raise ValidationFailed(
                f"{field}[{index}]: unknown scope {scope[:64]!r}; "
                f"the scopes are: {', '.join(SCOPES)}",
                field=f"{field}[{index}]",
            )
    if not given:
        raise ValidationFailed(
            f"{field}: give at least one scope ({', '.join(SCOPES)})", field=field
        )
    return [scope for scope in SCOPES if scope in given]
