"""Draining one channel from a Celery task: one drainer per channel at a time.

Celery hands out `deliver(channel)` after each commit that adds notifications and on
every sweep, so several may arrive at once, twice (a duplicated broker message) or long
after a worker was killed. Each takes a per-channel lock in Redis first; one that finds
the lock taken returns at once. The lock keeps one channel's sends in order (an incident
is opened before it is resolved) and, with the pacer, within the provider's limits.

While rows it put back for a provider's pace (Slack: 1 post/s per channel) fall due
within PACE_WAIT_SECONDS, a drainer stays and looks again every NEW_WORK_POLL_SECONDS,
which also picks up what was handed on meanwhile (those hand-offs found the lock taken).

The lock expires by itself (`notify.lease_seconds`), so a worker killed while holding it
holds up its channel for at most that long, as its claimed rows' leases do. Correctness
does not rest on the lock: rows are claimed and recorded under their own fenced leases.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from incidents.notify.worker import NotifyWorker

log = logging.getLogger(__name__)

# How far off the next paced row may be for a drainer to stay for it, and how often it
# looks for due rows meanwhile.
PACE_WAIT_SECONDS = 2.0
NEW_WORK_POLL_SECONDS = 0.05

# Release only our own lock, or extend it; a lock that lapsed and was taken is not ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class ChannelLock:
    """A per-channel lock in Redis with a token and an expiry."""

    PREFIX = "incidents:notify:drain:"

    def __init__(self, client: Any, channel: str, ttl_seconds: float) -> None:
        self._client = client
        self._key = self.PREFIX + channel
        self._ttl_ms = int(ttl_seconds * 1000)
        self._token = uuid.uuid4().hex
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    def acquire(self) -> bool:
        """Take the lock if it is free."""
        return bool(self._client.set(self._key, self._token, nx=True, px=self._ttl_ms))

    def extend(self) -> bool:
        """Keep holding it; False if it lapsed and is someone else's now."""
        return bool(self._extend(keys=[self._key], args=[self._token, self._ttl_ms]))

    def release(self) -> None:
        """Let it go (only if it is still ours)."""
        self._release(keys=[self._key], args=[self._token])


def drain(worker: NotifyWorker, channel: str, lock: ChannelLock, budget_seconds: float) -> int:
    """Send what is due on `channel` for up to `budget_seconds`; return how many were
    handled, or -1 if another drainer holds the channel.

    After letting the lock go it looks once more: a hand-off that arrived while the lock
    was held returned at once, and its notification is seen here.
    """
    handled = 0
    deadline = time.monotonic() + budget_seconds
    while True:
        if not lock.acquire():
            return handled or -1
        try:
            while time.monotonic() < deadline:
                done = worker.run_once(channel)
                handled += done
                if not lock.extend():
                    break
                if done:
                    continue
                paced = worker.pace_wait(channel)
                if paced is None or paced > PACE_WAIT_SECONDS:
                    break
                time.sleep(min(max(paced, 0.005), NEW_WORK_POLL_SECONDS))
        finally:
            lock.release()
        if time.monotonic() >= deadline or not worker.has_due(channel):
            return handled
