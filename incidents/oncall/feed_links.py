"""Secret calendar-feed links: a schedule's iCalendar feed that a calendar app can fetch
without an API key.

Calendar apps subscribe to a URL and send no `Authorization` header (Google Calendar
cannot), so the feed a key opens (`/api/v1/schedules/{name}.ics`) is also served at
`/feeds/schedules/{name}.ics?token=...`, where the token is an HMAC of the schedule's
name under the server's secret. A token opens that one schedule's feed, read-only, and
nothing else. Changing the secret revokes every link.

The secret is `auth.key_secret`, else the bootstrap token (`INCIDENTS_API_TOKEN`); with
neither set there is nothing to sign with and no links are made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

from incidents.config import Settings

FEED_PREFIX = "/feeds/schedules"


def feed_secret(settings: Settings) -> bytes | None:
    """The secret feed tokens are signed with, or None when none is configured."""
    secret = settings.auth.secret() or settings.api_token
    return secret.encode() if secret else None


def feed_token(secret: bytes, schedule: str) -> str:
    """The token that opens one schedule's feed."""
    digest = hmac.new(secret, b"schedule-feed\0" + schedule.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_opens(secret: bytes, schedule: str, token: str) -> bool:
    """True when `token` is the one for this schedule (compared in constant time)."""
    return hmac.compare_digest(feed_token(secret, schedule).encode(), token.encode())


def feed_path(secret: bytes, schedule: str) -> str:
    """The feed's path and query, to put after the service's public address."""
    return f"{FEED_PREFIX}/{quote(schedule, safe='')}.ics?token={feed_token(secret, schedule)}"
