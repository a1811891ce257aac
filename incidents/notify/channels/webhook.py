"""The webhook channel: a signed JSON POST of the notification to the target URL.

Headers: `X-Incidents-Event`, `X-Incidents-Delivery` (the delivery id: the notify worker
may deliver the same one twice after a crash, and a receiver de-duplicates on it),
`X-Incidents-Timestamp`, and with a secret `X-Incidents-Signature: sha256=<hex>`, the
HMAC-SHA256 of `"{timestamp}.{body}"`. Signing the timestamp with the body lets a
receiver refuse old replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from incidents.notify.base import Notification, SendResult, register

SIGNATURE_PREFIX = "sha256="


class WebhookSettings(BaseModel):
    """How webhook notifications are signed and how long a receiver may take."""

    model_config = ConfigDict(extra="forbid")

    # Empty: requests go unsigned (no X-Incidents-Signature header).
    secret: str = ""
    timeout_seconds: float = Field(default=10, gt=0)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (seconds or an HTTP date), else None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def payload(n: Notification) -> dict[str, Any]:
    """The JSON document a receiver gets."""
    return {
        "delivery_id": n.delivery_id,
        "incident_id": n.incident_id,
        "event": n.event,
        "severity": n.severity,
        "status": n.status,
        "title": n.title,
        "services": list(n.services),
        "root_cause": n.root_cause,
        "root_reason": n.root_reason,
        "blast_radius": list(n.blast_radius),
        "url": n.url,
        "details": list(n.details),
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for a body sent at a timestamp."""
    message = timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether a received signature header matches, compared in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookNotifier:
    """POSTs one signed JSON document per notification."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        # Redirects are not followed: a signed POST should not wander to another host.
        self._client = httpx.Client(timeout=settings.timeout_seconds, follow_redirects=False)

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def send(self, notification: Notification) -> SendResult:
        """POST the notification to its target URL and classify the answer."""
        url = notification.target
        if urlsplit(url).scheme not in ("http", "https"):
            return SendResult(
                ok=False,
                target_unreachable=True,
                error=f"webhook target is not an http(s) URL: {url!r}",
            )
        body = json.dumps(payload(notification), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "incidents-webhook",
            "X-Incidents-Event": notification.event,
            "X-Incidents-Delivery": str(notification.delivery_id),
            "X-Incidents-Timestamp": timestamp,
        }
        if self.settings.secret:
            headers["X-Incidents-Signature"] = sign(self.settings.secret, timestamp, body)
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return SendResult(ok=False, retryable=True, error=f"webhook timed out: {exc!r}")
        except httpx.TransportError as exc:
            return SendResult(ok=False, retryable=True, error=f"webhook unreachable: {exc!r}")
        except httpx.HTTPError as exc:
            return SendResult(ok=False, retryable=False, error=f"webhook request failed: {exc!r}")
        return classify_response(response.status_code, response.headers, response.text)


def classify_response(status: int, headers: Mapping[str, str], text: str) -> SendResult:
    """A `SendResult` for a receiver's HTTP answer."""
    if 200 <= status < 300:
        return SendResult(ok=True, provider_id=headers.get("X-Request-Id"))
    snippet = text[:200].strip()
    error = f"webhook answered {status}" + (f": {snippet}" if snippet else "")
    if status == 429 or status >= 500:
        retry_after = retry_after_seconds(headers.get("Retry-After"))
        return SendResult(ok=False, retryable=True, retry_after=retry_after, error=error)
    return SendResult(ok=False, retryable=False, error=error)


def settings_from(value: Any) -> WebhookSettings:
    """Webhook settings from a `WebhookSettings`, a mapping, or None (the defaults)."""
    if isinstance(value, WebhookSettings):
        return value
    if value is None:
        return WebhookSettings()
    if isinstance(value, Mapping):
        return WebhookSettings.model_validate(dict(value))
    raise TypeError(f"expected WebhookSettings or a mapping, got {type(value).__name__}")


@register("webhook")
def build_webhook(settings: Any) -> WebhookNotifier:
    """The webhook channel from its settings."""
    return WebhookNotifier(settings_from(settings))
