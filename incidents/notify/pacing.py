"""Provider budgets shared by every sender: Slack's one post a second per channel, and a
separate budget for edits.

A pacer hands out time slots per key. `take(key, interval)` reserves the next free slot
and answers how long to wait for it; with `reserve_later=False` it reserves only a slot
that is free now, and otherwise answers how long until one is, so a sender can put that
notification back and go on with others. The embedded default keeps slots in memory;
with a broker, several notify workers share them in Redis, on Redis's clock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Pacer(Protocol):
    """Time slots per key."""

    def take(self, key: str, interval: float, *, reserve_later: bool = True) -> tuple[bool, float]:
        """(reserved, seconds until the slot): reserved now, later, or not at all."""
        ...


class LocalPacer:
    """Slots in this process's memory (one sender per channel: the embedded default)."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, key: str, interval: float, *, reserve_later: bool = True) -> tuple[bool, float]:
        """Reserve the next slot of `key` (see the module docstring)."""
        now = time.monotonic()
        with self._lock:
            at = max(now, self._next.get(key, 0.0))
            if at > now and not reserve_later:
                return False, at - now
            self._next[key] = at + interval
        return True, at - now


# KEYS[1]: the key; ARGV: interval seconds, 1 to reserve a later slot. Answers
# {reserved (0/1), wait in microseconds}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = math.floor(tonumber(ARGV[1]) * 1000000)
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = math.max(now, nxt)
if at > now and ARGV[2] ~= '1' then
  return {0, at - now}
end
local keep = math.floor((at + interval - now) / 1000) + 1000
redis.call('SET', KEYS[1], tostring(at + interval), 'PX', keep)
return {1, at - now}
"""


class RedisPacer:
    """Slots in Redis, shared by every notify worker; falls back to memory when Redis
    cannot be reached (a worker without its broker sends nothing new anyway)."""

    PREFIX = "incidents:notify:pace:"
    # After Redis failed, pace in memory this long before asking it again.
    DOWN_PAUSE_SECONDS = 5.0

    def __init__(self, client: Any) -> None:
        self._client = client
        self._script = client.register_script(_TAKE)
        self._local = LocalPacer()
        self._down_until = 0.0

    def take(self, key: str, interval: float, *, reserve_later: bool = True) -> tuple[bool, float]:
        """Reserve the next slot of `key` in Redis (see the module docstring)."""
        import redis

        if time.monotonic() < self._down_until:
            return self._local.take(key, interval, reserve_later=reserve_later)
        try:
            reserved, wait = self._script(
                keys=[self.PREFIX + key], args=[interval, 1 if reserve_later else 0]
            )
        except redis.RedisError as exc:
            log.warning("pacing in memory: Redis is unavailable (%s)", exc)
            self._down_until = time.monotonic() + self.DOWN_PAUSE_SECONDS
            return self._local.take(key, interval, reserve_later=reserve_later)
        return bool(reserved), int(wait) / 1_000_000
