"""The time heartbeats are judged by; tests replace `now` to move it at will.

Every heartbeat decision (a ping, an expiry, the times of the synthetic alert) reads the
time through `clock.now()`, looked up on this module at each call.
"""

from __future__ import annotations

from datetime import datetime

from incidents.db import utcnow


def now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return utcnow()
