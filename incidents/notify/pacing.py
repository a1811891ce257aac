"""Provider budgets shared by every sender: Slack's one post a second per channel, and a
separate budget for edits.

A pacer hands out time slots per key. `take(key, interval)` reserves the next free slot
and answers how long to wait for it; with `reserve_later=False` it reserves only a slot
that is free now, and otherwise answers how long until one is, so a sender can put that
notification back and go on with others. `take_now` does that for several keys at once
(all or none: an edit needs the workspace's edit budget and its channel's post slot for
the thread reply). `hold(key, seconds)` keeps a key's next slot at least that far off (a
429's Retry-After). The embedded default keeps slots in memory; with a broker, several
notify workers share them in Redis, on Redis's clock.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Pacer(Protocol):
    """Time slots per key."""

    def take(self, key: str, interval: float, *, reserve_later: bool = True) -> tuple[bool, float]:
        """(reserved, seconds until the slot): reserved now, later, or not at all."""
        ...

    def take_now(self, slots: Sequence[tuple[str, float]]) -> tuple[bool, float]:
        """Reserve a slot of every (key, interval) if all are free now, else none; answer
        (reserved, seconds until all are free)."""
        ...

    def hold(self, key: str, seconds: float) -> None:
        """No slot of `key` before `seconds` from now."""
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

    def take_now(self, slots: Sequence[tuple[str, float]]) -> tuple[bool, float]:
        """Reserve a slot of every key if all are free now (see the module docstring)."""
        now = time.monotonic()
        with self._lock:
            wait = max((self._next.get(key, 0.0) - now for key, _ in slots), default=0.0)
            if wait > 0:
                return False, wait
            for key, interval in slots:
                self._next[key] = now + interval
        return True, 0.0

    def hold(self, key: str, seconds: float) -> None:
        """No slot of `key` before `seconds` from now."""
        with self._lock:
            self._next[key] = max(self._next.get(key, 0.0), time.monotonic() + seconds)


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


# KEYS: the keys; ARGV: their intervals in seconds. Answers {reserved (0/1), wait in
# microseconds until every key is free}.
_TAKE_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
for _, key in ipairs(KEYS) do
  local nxt = tonumber(redis.call('GET', key) or '0')
  if nxt - now > wait then wait = nxt - now end
end
if wait > 0 then
  return {0, wait}
end
for i, key in ipairs(KEYS) do
  local interval = math.floor(tonumber(ARGV[i]) * 1000000)
  redis.call('SET', key, tostring(now + interval), 'PX', math.floor(interval / 1000) + 1000)
end
return {1, 0}
"""

# KEYS[1]: the key; ARGV[1]: seconds. The key's next slot is at least that far off.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + math.floor(tonumber(ARGV[1]) * 1000000)
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > nxt then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.floor((until_ - now) / 1000) + 1000)
end
return 1
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
        self._take_now = client.register_script(_TAKE_NOW)
        self._hold = client.register_script(_HOLD)
        self._local = LocalPacer()
        self._down_until = 0.0

    def take(self, key: str, interval: float, *, reserve_later: bool = True) -> tuple[bool, float]:
        """Reserve the next slot of `key` in Redis (see the module docstring)."""
        if self._up():
            try:
                reserved, wait = self._script(
                    keys=[self.PREFIX + key], args=[interval, 1 if reserve_later else 0]
                )
                return bool(reserved), int(wait) / 1_000_000
            except Exception as exc:
                self._went_down(exc)
        return self._local.take(key, interval, reserve_later=reserve_later)

    def take_now(self, slots: Sequence[tuple[str, float]]) -> tuple[bool, float]:
        """Reserve a slot of every key in Redis if all are free now."""
        if self._up():
            try:
                reserved, wait = self._take_now(
                    keys=[self.PREFIX + key for key, _ in slots],
                    args=[interval for _, interval in slots],
                )
                return bool(reserved), int(wait) / 1_000_000
            except Exception as exc:
                self._went_down(exc)
        return self._local.take_now(slots)

    def hold(self, key: str, seconds: float) -> None:
        """No slot of `key` before `seconds` from now, in Redis."""
        if self._up():
            try:
                self._hold(keys=[self.PREFIX + key], args=[seconds])
                return
            except Exception as exc:
                self._went_down(exc)
        self._local.hold(key, seconds)

    def _up(self) -> bool:
        return time.monotonic() >= self._down_until

    def _went_down(self, exc: Exception) -> None:
        import redis

        if not isinstance(exc, redis.RedisError):
            raise exc
        log.warning("pacing in memory: Redis is unavailable (%s)", exc)
        self._down_until = time.monotonic() + self.DOWN_PAUSE_SECONDS


class Taken:
    """What one sender knows of its own slots, so that a queue for a busy target is not
    claimed only to be put back (that would read and write every queued row each second).

    Keys are pacer keys ("slack:post:#a", "slack:update"), each until when (monotonic) it
    is taken; and per channel, when the rows this sender put back fall due. It is a hint:
    the pacer stays the authority on every slot.
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._held: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def mark(self, key: str, seconds: float) -> None:
        """`key` is taken for `seconds` from now."""
        with self._lock:
            until = time.monotonic() + seconds
            self._until[key] = max(until, self._until.get(key, 0.0))

    def left(self, keys: Sequence[str]) -> float:
        """Seconds until every key is free, as far as this sender knows (0: free)."""
        now = time.monotonic()
        with self._lock:
            return max((self._until.get(k, now) - now for k in keys), default=0.0)

    def held(self, channel: str, seconds: float) -> None:
        """A row of `channel` was put back, due in `seconds`."""
        with self._lock:
            heapq.heappush(self._held.setdefault(channel, []), time.monotonic() + seconds)

    def busy(self, channel: str) -> list[str]:
        """The channel's keys taken now; forgets what is free again and what is due."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, until in self._until.items() if until <= now]:
                del self._until[key]
            due = self._held.setdefault(channel, [])
            while due and due[0] <= now:
                heapq.heappop(due)
            return [k for k in self._until if k.startswith(f"{channel}:")]

    def waits(self, channel: str) -> tuple[float | None, float | None]:
        """Seconds until the channel's next put-back row is due, and until its next taken
        key is free (None: nothing of the kind)."""
        now = time.monotonic()
        with self._lock:
            due = self._held.get(channel) or []
            ends = [u for k, u in self._until.items() if k.startswith(f"{channel}:")]
        return (
            max(0.0, due[0] - now) if due else None,
            max(0.0, min(ends) - now) if ends else None,
        )
