"""At start-up: does the Slack bot token have what the war room calls? Said in the log,
never a reason not to start."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

log = logging.getLogger(__name__)

# What incidents.notify.channels.warroom calls: conversations.create/invite/archive,
# conversations.list, conversations.history (an earlier post), chat.postMessage, pins.add.
NEEDED = ("channels:manage", "channels:read", "channels:history", "chat:write", "pins:write")


def missing_scopes(client: WebClient) -> list[str] | None:
    """The needed scopes the token lacks; None if Slack could not be asked."""
    try:
        answer = client.auth_test()
    except Exception as exc:
        log.warning("war room: could not check the Slack bot token's scopes (%s)", exc)
        return None
    granted: set[str] = set()
    for name, value in (answer.headers or {}).items():
        if name.lower() == "x-oauth-scopes":
            raw = value[0] if isinstance(value, list) and value else value
            granted |= {s.strip() for s in str(raw).split(",") if s.strip()}
    return [scope for scope in NEEDED if scope not in granted]


def check_at_startup(settings: Any, client: WebClient | None = None) -> list[str] | None:
    """Log an ERROR naming the scopes the war room needs and lacks; return them."""
    if not (settings.warroom.enabled and settings.slack_bot_token):
        return None
    client = client or WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[],
    )
    missing = missing_scopes(client)
    if missing:
        log.error(
            "war room: the Slack bot token lacks the scopes %s, so P0 war rooms will fail; "
            "add them to the Slack app, or turn the war room off (warroom.enabled: false, "
            "INCIDENTS_WARROOM__ENABLED=false)",
            ", ".join(missing),
        )
    return missing
