"""Whether an earlier Slack post reached Slack: looked up by the metadata on the message.

Every message the Slack channel posts (the incident's message and each thread reply)
carries message metadata naming the notification it was for. When the notify worker did
not learn how a post went (it was killed, the request timed out), it looks for that
metadata in the channel's recent history, or in the incident thread's replies, before it
posts again. Edits (`chat.update`) need no look-up: making one twice changes nothing.

The lookup reads `conversations.history` / `conversations.replies` (scopes
`channels:history`, `groups:history`) and, to turn a channel name into the id those
methods take, `conversations.list` (`channels:read`, `groups:read`).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from slack_sdk import WebClient

EVENT_TYPE = "incident_notification"
# Pages of history to read at most: a lookup covers the minutes since the attempt.
MAX_PAGES = 10
# Slack's clock and ours differ a little; look a bit before the attempt.
SLACK_CLOCK_SKEW_SECONDS = 5.0


def metadata(delivery_id: int, incident_id: int) -> dict[str, Any]:
    """The message metadata that ties a Slack message to one notification."""
    return {
        "event_type": EVENT_TYPE,
        "event_payload": {"notification": delivery_id, "incident": incident_id},
    }


def _is_ours(message: dict[str, Any], delivery_id: int) -> bool:
    meta = message.get("metadata") or {}
    if meta.get("event_type") != EVENT_TYPE:
        return False
    payload = meta.get("event_payload") or {}
    return str(payload.get("notification")) == str(delivery_id)


class ChannelIds:
    """Channel names to ids, read once from `conversations.list` and kept."""

    def __init__(self, client: WebClient) -> None:
        self._client = client
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def resolve(self, target: str) -> str:
        """The channel id for `#name`, `name` or an id; raises LookupError if unknown."""
        name = target.lstrip("#")
        if not target.startswith("#") and name[:1] in ("C", "G", "D") and name.isupper():
            return name
        with self._lock:
            if name in self._ids:
                return self._ids[name]
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = self._client.conversations_list(
                types="public_channel,private_channel", limit=1000, cursor=cursor
            )
            for channel in page.get("channels") or []:
                with self._lock:
                    self._ids[str(channel.get("name"))] = str(channel.get("id"))
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if name in self._ids or not cursor:
                break
        with self._lock:
            if name in self._ids:
                return self._ids[name]
        raise LookupError(f"slack channel {target!r} is not among the bot's conversations")


def find_post(
    client: WebClient, channel: str, since: datetime, delivery_id: int, thread_ts: str | None
) -> str | None:
    """The ts of the message posted for this notification since `since`, if any.

    With `thread_ts`, the thread's replies are searched; otherwise the channel's history.
    """
    oldest = f"{since.timestamp() - SLACK_CLOCK_SKEW_SECONDS:.6f}"
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        if thread_ts:
            page = client.conversations_replies(
                channel=channel,
                ts=thread_ts,
                oldest=oldest,
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
        else:
            page = client.conversations_history(
                channel=channel, oldest=oldest, include_all_metadata=True, limit=200, cursor=cursor
            )
        for message in page.get("messages") or []:
            if _is_ours(message, delivery_id):
                return str(message.get("ts"))
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return None
    return None
