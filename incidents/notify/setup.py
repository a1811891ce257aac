"""Build the channels from the settings, and the notify worker that sends through them.

A channel whose credentials are not set is replaced by the console, and start-up says
so once per channel: a fresh `make run` prints every notification instead of failing.

A receiver with `templates:` for a channel gets its own instance of that channel, built
with the same credentials and its overrides; `ByReceiver` sends each notification
through its receiver's instance, or the shared one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

import incidents.notify.channels  # noqa: F401  (registers every channel)
from incidents.notify.base import Notification, Notifier, Reconciler, SendResult, build
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
    overrides = receiver_overrides(settings)
    for name, (ready, values) in channel_settings(settings).items():
        if name == "console" or (ready and name in _registered()):
            shared = console if name == "console" else build(name, values)
            own = {
                receiver: build(name, {**values, **fields})
                for receiver, fields in overrides.get(name, {}).items()
            }
            out[name] = ByReceiver(shared, own) if own else shared
        else:
            if name != "warroom":  # off, the war room writes no rows to send
                log.warning("%s is not configured: its notifications go to the console", name)
            out[name] = StandIn(name, console)
    return out


def receiver_overrides(settings: Any) -> dict[str, dict[str, dict[str, str]]]:
    """Channel -> receiver -> the channel settings its `templates:` override."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    routing = getattr(settings, "routing", None)
    for receiver in routing.receivers if routing is not None else ():
        if receiver.templates is None:
            continue
        for channel, fields in receiver.templates.by_channel().items():
            out.setdefault(channel, {})[receiver.name] = fields
    return out


class ByReceiver:
    """One channel, with an instance of its own for each receiver that rewords it."""

    def __init__(self, shared: Notifier, own: Mapping[str, Notifier]) -> None:
        self.name = shared.name
        self.shared = shared
        self.own = dict(own)

    def pick(self, notification: Notification) -> Notifier:
        """The instance that words this notification."""
        return self.own.get(notification.receiver, self.shared)

    def send(self, notification: Notification) -> SendResult:
        """Send through the receiver's instance."""
        return self.pick(notification).send(notification)

    def attempt_key(self, notification: Notification) -> str | None:
        """The receiver's instance's key (None for a channel that keeps none)."""
        notifier = self.pick(notification)
        return notifier.attempt_key(notification) if isinstance(notifier, Reconciler) else None

    def find(
        self, notification: Notification, since: datetime, key: str | None
    ) -> SendResult | None:
        """Ask the provider through the receiver's instance; None if it cannot be asked."""
        notifier = self.pick(notification)
        if not isinstance(notifier, Reconciler):
            return None
        return notifier.find(notification, since, key)


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
