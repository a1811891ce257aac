"""The channel seam: what a channel is handed, what it answers, and the registry.

A channel turns one `Notification` (an incident event for one target) into one provider
request and says how it went in a `SendResult`: sent (with the provider's id), or failed
and whether trying again may help, after how long, and whether the target itself is
unreachable (a number that sent STOP). The notify worker owns retries, backoff, rate
limits and the once-only guarantee; channels only send.

Channels are registered by name with `@register("slack")` and built from the settings
with `build(name, settings)`. No channel is imported by the pipeline: stages write
delivery rows and never make network calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Notification:
    """An incident event, rendered for one target of one channel."""

    delivery_id: int
    incident_id: int
    # The event: opened, severity_raised, reopened, resolved; `updated` for symptom updates.
    event: str
    severity: str
    status: str
    title: str
    services: tuple[str, ...]
    root_cause: str | None
    root_reason: str | None
    blast_radius: tuple[str, ...]
    url: str
    # Where to: a Slack channel, an email address, a phone number, a webhook URL.
    target: str
    # What an earlier send to this target returned for the incident's thread (Slack
    # channel and ts, the first email's Message-ID); empty on the first send.
    thread: dict[str, str] = field(default_factory=dict)
    # Short lines for a thread reply (alerts that joined, a re-root).
    details: tuple[str, ...] = ()
    # SMS only: the target's short code for the incident (`<code>a` acknowledges), and
    # whether the number replied STOP (then nothing is sent to it).
    reply_code: int | None = None
    opted_out: bool = False
    # The routing receiver the row was written for: its own templates, if it has any,
    # word the message (incidents.notify.receiver_templates).
    receiver: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one send went."""

    ok: bool
    provider_id: str | None = None
    # On failure: may a later attempt succeed, and not before how many seconds.
    retryable: bool = False
    retry_after: float | None = None
    # Which call was rate limited (Slack keeps a budget per method: chat.update's is the
    # workspace's, chat.postMessage's the channel's).
    limited: str | None = None
    error: str | None = None
    # The target cannot be reached at all (STOP, invalid number, a landline for SMS).
    target_unreachable: bool = False
    # The provider's error code, when it gave one (Twilio's 21211, 30006, ...).
    error_code: int | None = None
    # Thread information to keep for later sends about the same incident and target.
    thread: dict[str, str] = field(default_factory=dict)
    # The request may have reached the provider (a timeout, a reset connection, a
    # gateway's 5xx): the next attempt asks the provider before it sends again.
    in_doubt: bool = False


class Notifier(Protocol):
    """One channel."""

    name: str

    def send(self, notification: Notification) -> SendResult:
        """Send one notification; never raise for a provider error, answer it."""
        ...


@runtime_checkable
class Reconciler(Protocol):
    """A channel that can tell whether an earlier attempt reached the provider.

    The worker commits the time (and `attempt_key`) of every request before making it.
    If it never learns the outcome (it was killed, the request timed out), the next
    attempt calls `find` first, and sends only if the provider has nothing.
    """

    def attempt_key(self, notification: Notification) -> str | None:
        """What identifies this request at the provider beyond time and target, if
        anything (a digest of an SMS body); stored before the request is made."""
        ...

    def find(
        self, notification: Notification, since: datetime, key: str | None
    ) -> SendResult | None:
        """The earlier attempt's result if the provider has it, None if it does not;
        raises if the provider cannot be asked now."""
        ...


Factory = Callable[[Any], Notifier]
_registry: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    """Register a channel factory (settings -> Notifier) under a name."""

    def add(factory: Factory) -> Factory:
        _registry[name] = factory
        return factory

    return add


def build(name: str, settings: Any) -> Notifier:
    """The channel registered under this name, built from the settings."""
    try:
        factory = _registry[name]
    except KeyError:
        raise KeyError(
            f"no channel named {name!r}; known: {', '.join(sorted(_registry))}"
        ) from None
    return factory(settings)


def channel_names() -> list[str]:
    """Every registered channel."""
    return sorted(_registry)
