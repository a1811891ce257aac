"""Build the channels from the settings, and the notify worker that sends through them.

A channel whose credentials are not set is replaced by the console, and start-up says
so once per channel: a fresh `make run` prints every notification instead of failing.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

import incidents.notify.channels  # noqa: F401  (registers every channel)
from incidents.notify.base import Notification, Notifier, SendResult, build
from incidents.notify.channels.warroom import WarRoomNotifier
from incidents.notify.pacing import Pacer
from incidents.notify.worker import NotifyWorker
from incidents.warroom.scopes import check_at_startup

log = logging.getLogger(__name__)

CHANNELS = ("slack", "email", "sms", "voice", "webhook", "console", "warroom")


def channel_settings(settings: Any) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Per channel: whether it is configured, and the settings to build it with."""
    twilio = {
        "account_sid": settings.twilio_account_sid,
        "auth_token": settings.twilio_auth_token,
        "from_number": settings.twilio_from_number,
        "api_url": settings.twilio_api_url,
        # Where Twilio calls back (status, key presses): the service's public address.
        "public_url": getattr(settings, "public_url", "") or settings.notify.public_url,
    }
    twilio_ready = all(twilio[k] for k in ("account_sid", "auth_token", "from_number"))
    slack = {
        "bot_token": settings.slack_bot_token,
        "signing_secret": settings.slack_signing_secret,
        "api_url": settings.slack_api_url,
    }
    return {
        "slack": (bool(settings.slack_bot_token), slack),
        "email": (
            bool(settings.smtp_host),
            {
                "host": settings.smtp_host,
                "port": settings.smtp_port,
                "username": settings.smtp_username,
                "password": settings.smtp_password,
                "sender": settings.smtp_from,
                "tls": settings.smtp_tls,
                "public_url": settings.notify.public_url,
            },
        ),
        "sms": (twilio_ready, twilio),
        "voice": (twilio_ready, twilio),
        "webhook": (True, {"secret": settings.notify.webhook_secret}),
        "console": (True, {}),
        # The P0 war room (incidents.warroom): Slack's token, on unless switched off.
        "warroom": (
            bool(settings.slack_bot_token) and settings.warroom.enabled,
            {**slack, "channel_prefix": settings.warroom.channel_prefix},
        ),
    }


def build_channels(settings: Any) -> dict[str, Notifier]:
    """Every channel by name; unconfigured ones print to the console instead."""
    console = build("console", {})
    out: dict[str, Notifier] = {}
    for name, (ready, values) in channel_settings(settings).items():
        if name == "console":
            out[name] = console
        elif ready and name in _registered():
            out[name] = build(name, values)
        else:
            if name != "warroom":  # off, the war room writes no rows to send
                log.warning("%s is not configured: its notifications go to the console", name)
            out[name] = StandIn(name, console)
    return out


class StandIn:
    """The console standing in for a channel without credentials: it says which."""

    def __init__(self, name: str, console: Notifier) -> None:
        self.name = name
        self._console = console

    def send(self, notification: Notification) -> SendResult:
        """Print the notification, naming the channel and target it was meant for."""
        meant = f"for {self.name} {notification.target} ({self.name} is not configured)"
        return self._console.send(replace(notification, details=(meant, *notification.details)))


def _registered() -> set[str]:
    from incidents.notify.base import channel_names

    return set(channel_names())


def make_notify_worker(
    factory: sessionmaker[Session], settings: Any, pacer: Pacer | None = None
) -> NotifyWorker:
    """The notify worker for these settings (not started).

    Also where the API (embedded) and the notify worker process (Celery) check at
    start-up that the Slack token has the war room's scopes (logged, never fatal)."""
    channels = build_channels(settings)
    warroom = channels.get("warroom")
    if isinstance(warroom, WarRoomNotifier):
        warroom.bind(factory)
        check_at_startup(settings, warroom.client)
    return NotifyWorker(
        factory,
        channels,
        public_url=settings.notify.public_url,
        max_attempts=settings.notify.max_attempts,
        digest_hour=settings.notify.digest_hour,
        lease=timedelta(seconds=settings.notify.lease_seconds),
        pacer=pacer,
    )
