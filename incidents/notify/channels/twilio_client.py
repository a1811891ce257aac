"""What the SMS and voice channels share: settings, the Twilio client, error classification.

The client is the real `twilio.rest.Client`. Its HTTP client is a `TwilioHttpClient`
that can send every request to another base URL (`api_url`), so a test or a
Twilio-compatible proxy sees exactly what Twilio would, and that remembers the last
response's headers per thread: `TwilioRestException` carries no headers, and a 429's
`Retry-After` is only there.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from incidents.notify.base import SendResult
from incidents.notify.channels.webhook import retry_after_seconds
from incidents.notify.twilio_codes import UNREACHABLE

log = logging.getLogger(__name__)


class TwilioSettings(BaseModel):
    """Credentials, sender and endpoints for the Twilio channels (SMS and voice)."""

    model_config = ConfigDict(extra="forbid")

    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    # Empty: Twilio itself. Otherwise every API request goes to this base URL instead.
    api_url: str = ""
    # Where Twilio reaches this service: the voice menu's answer (`<Gather action>`) and
    # delivery status callbacks go there. Empty: neither is asked for.
    public_url: str = ""
    timeout_seconds: float = Field(default=10, gt=0)
    # Jinja2 overrides (sandboxed); empty keeps the built-in text.
    sms_template: str = ""
    sms_resolved_template: str = ""
    voice_template: str = ""


def settings_from(value: Any) -> TwilioSettings:
    """Twilio settings from a `TwilioSettings`, a mapping, or None (the defaults)."""
    if isinstance(value, TwilioSettings):
        return value
    if value is None:
        return TwilioSettings()
    if isinstance(value, Mapping):
        return TwilioSettings.model_validate(dict(value))
    raise TypeError(f"expected TwilioSettings or a mapping, got {type(value).__name__}")


class RoutedHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no types
    """A `TwilioHttpClient` that can send to another base URL and keeps response headers."""

    def __init__(self, base_url: str, timeout: float) -> None:
        # No retries here: a channel makes one attempt and the notify worker retries.
        super().__init__(timeout=timeout, max_retries=0)
        self.base_url = base_url.rstrip("/")
        self._last = threading.local()

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request, to `base_url` if set, remembering the response."""
        self._last.response = None
        response: Response = super().request(
            method,
            self.route(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self._last.response = response
        return response

    def route(self, url: str) -> str:
        """The URL with Twilio's scheme and host replaced by the base URL's."""
        if not self.base_url:
            return url
        base = urlsplit(self.base_url)
        parts = urlsplit(url)
        return urlunsplit(
            (base.scheme, base.netloc, base.path + parts.path, parts.query, parts.fragment)
        )

    def last_header(self, name: str) -> str | None:
        """A header of this thread's last response, if there was one."""
        response: Response | None = getattr(self._last, "response", None)
        if response is None or not response.headers:
            return None
        wanted = name.lower()
        for key, value in response.headers.items():
            if str(key).lower() == wanted:
                return str(value)
        return None


def build_client(settings: TwilioSettings) -> tuple[Client, RoutedHttpClient]:
    """The real Twilio REST client, and its HTTP client, for these settings."""
    http = RoutedHttpClient(settings.api_url, settings.timeout_seconds)
    client = Client(
        settings.account_sid,
        settings.auth_token,
        http_client=http,
        # Without this an empty setting would fall back to TWILIO_* environment variables.
        environment={"_": ""},
    )
    return client, http


# How far around an attempt's start a message or call it made may have been created:
# Twilio's clock and ours differ a little, and its date_created has whole seconds.
CLOCK_SLACK = timedelta(seconds=5)


def body_key(body: str) -> str:
    """What identifies an SMS at Twilio besides number and time: a digest of its text."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


def find_created(
    resources: Iterable[Any],
    since: datetime,
    until: datetime,
    matches: Callable[[Any], bool] = lambda _: True,
) -> str | None:
    """The sid of the newest message or call created within [since, until] that matches.

    `resources` is Twilio's listing for one sender and recipient, newest first. The
    window closes when the attempt's request timed out: a later one to the same number
    is another notification's.
    """
    for resource in resources:
        created = resource.date_created
        if created is None or not since - CLOCK_SLACK <= created <= until + CLOCK_SLACK:
            continue
        if matches(resource):
            return str(resource.sid)
    return None


# Where Twilio posts what became of a message or call (incidents.api.twilio_status).
STATUS_CALLBACK_PATH = "/api/v1/notify/twilio/status"


def status_callback_url(settings: TwilioSettings, delivery_id: int) -> str | None:
    """The status callback URL for one notification, or None without a `public_url`."""
    if not settings.public_url:
        return None
    base = settings.public_url.rstrip("/")
    return f"{base}{STATUS_CALLBACK_PATH}?notification={delivery_id}"


def missing_settings(settings: TwilioSettings) -> list[str]:
    """The settings a Twilio channel cannot send without."""
    needed = ("account_sid", "auth_token", "from_number")
    return [name for name in needed if not getattr(settings, name)]


# Codes worth another attempt later.
RETRYABLE: dict[int, str] = {
    20429: "too many requests",
    30003: "unreachable destination handset (switched off or out of coverage)",
}


def classify(exc: Exception, http: RoutedHttpClient) -> SendResult:
    """Turn what a Twilio call raised into a `SendResult`."""
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        return classify_code(int(exc.status), _code(exc.code), _message(exc), http)
    if isinstance(exc, OSError):
        # requests' ConnectionError and Timeout are OSErrors: nothing reached Twilio, or
        # nothing came back in time (and Twilio may have taken it: look before resending).
        return SendResult(
            ok=False, retryable=True, in_doubt=True, error=f"twilio unreachable: {exc}"
        )
    if isinstance(exc, TwilioException):
        return SendResult(ok=False, retryable=False, error=f"twilio client error: {exc}")
    # A malformed answer (a proxy's HTML page) may be gone on the next attempt.
    return SendResult(ok=False, retryable=True, error=f"unexpected twilio answer: {exc!r}")


def _code(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _message(exc: TwilioRestException | TwilioServiceException) -> str:
    if isinstance(exc, TwilioServiceException):
        return str(exc.detail or exc.title)
    return str(exc.msg)


def classify_code(
    status: int, code: int | None, message: str, http: RoutedHttpClient
) -> SendResult:
    """A `SendResult` for a Twilio HTTP status and error code."""
    label = f"twilio {status}" + (f" code {code}" if code is not None else "")
    if code is not None and code in UNREACHABLE:
        return SendResult(
            ok=False,
            retryable=False,
            target_unreachable=True,
            error_code=code,
            error=f"{label}: {UNREACHABLE[code]} ({message})",
        )
    if status == 429 or (code is not None and code in RETRYABLE):
        meaning = RETRYABLE.get(code or 0, "too many requests")
        return SendResult(
            ok=False,
            retryable=True,
            retry_after=retry_after_seconds(http.last_header("Retry-After")),
            error=f"{label}: {meaning} ({message})",
        )
    if status >= 500:
        return SendResult(
            ok=False,
            retryable=True,
            in_doubt=True,
            retry_after=retry_after_seconds(http.last_header("Retry-After")),
            error=f"{label}: twilio server error ({message})",
        )
    if code == 20003 or status == 401:
        return SendResult(
            ok=False, retryable=False, error=f"{label}: authentication failed ({message})"
        )
    return SendResult(ok=False, retryable=False, error=f"{label}: {message}")
