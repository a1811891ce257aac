"""The `warroom:` settings section."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidents.notify.routing_config import Duration, parse_duration

# Where Slack posts its Events API requests (incidents.api.slack_events).
SLACK_EVENTS_PATH = "/api/v1/integrations/slack/events"


class WarRoomSettings(BaseModel):
    """A Slack channel per P0 incident, while a Slack bot token is configured."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # How long after the incident resolves its channel is archived (reopening cancels).
    archive_after: Duration = "24h"
    # Channels are named `<prefix>-<incident id>-<title slug>`.
    channel_prefix: str = Field(default="inc", min_length=1, max_length=20)

    def archive_delay(self) -> timedelta:
        """`archive_after` as a timedelta."""
        return parse_duration(self.archive_after)

    @field_validator("channel_prefix")
    @classmethod
    def _slack_name(cls, value: str) -> str:
        # Slack names allow lowercase letters, digits, `-` and `_` only.
        if not re.fullmatch(r"[a-z0-9_-]+", value):
            raise ValueError("use lowercase letters, digits, '-' and '_' only")
        return value
