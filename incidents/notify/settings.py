"""Notification settings: channel credentials and endpoints, and the notify worker's.

They are top-level settings so that the environment names are the documented contract
(`INCIDENTS_SLACK_BOT_TOKEN`, `INCIDENTS_SMTP_HOST`, `INCIDENTS_TWILIO_API_URL`, ...);
the config file takes the same names in lower case. A channel whose credentials are not
set falls back to the console, and start-up says so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class NotifySettings(BaseModel):
    """The notify worker."""

    model_config = {"extra": "forbid"}

    # Where people open an incident: links in messages point here.
    public_url: str = "http://127.0.0.1:8080"
    # Sends tried before a notification is marked failed (the timeline says so).
    max_attempts: int = Field(default=8, ge=1, le=100)
    # Signs webhook notifications (HMAC-SHA256, header X-Incidents-Signature).
    webhook_secret: str = ""
    # The embedded worker sends notifications from the API process (the default without
    # a broker); off, they wait in the outbox for a worker that does.
    enabled: bool = True
    # The hour (UTC) at which daily digests go out.
    digest_hour: int = Field(default=9, ge=0, le=23)
    # How long a worker holds the notifications it claimed (and, with a broker, its
    # channel): one killed mid-send delays that channel by at most about this long.
    lease_seconds: float = Field(default=30.0, ge=2.0, le=600.0)
    # With a broker: how often beat hands out channels whose notifications are due (the
    # opening hold, backoffs, and anything a killed worker left).
    sweep_interval_seconds: float = Field(default=1.0, gt=0, le=60)


class ChannelSettings(BaseModel):
    """Credentials and endpoints of the providers (mixed into Settings)."""

    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_api_url: str = "https://slack.com/api/"
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "incidents@localhost"
    smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from_number: str = ""
    twilio_api_url: str = ""
    notify: NotifySettings = Field(default_factory=NotifySettings)
