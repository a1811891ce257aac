"""What the notify benchmark sends and what it reads back: webhooks at set times in, the
fake Slack's requests out (tests/bench/notify.py runs the phases).

Every time here is `time.time()`: the fake Slack stamps each request it receives with it,
and the database's timestamps are wall-clock UTC too, so all of them compare directly.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.bench.service import HOST, TOKEN
from tests.factories import am_alert, am_payload
from tests.notify.fake_slack import Request

PATH = "/api/v1/alerts/alertmanager"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
BACKGROUND_SERVICES = 20
BACKGROUND_POOL = 2_000  # distinct alerts, sent again with a new annotation each round
PER_BODY = 10
STORM_SERVICES = 200
STORM_PER_SERVICE = 50
STORM_SECONDS = 60.0
STORM_TICK = 0.25


@dataclass(frozen=True, slots=True)
class Sent:
    """One webhook: when its first byte was written, and the answer."""

    at: float
    status: int
    answer: bytes


class Client:
    """One keep-alive connection to the server; reconnects once if the server closed it."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> Sent:
        """POST one Alertmanager body; `at` is taken just before the request is written."""
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(HOST, self._port, timeout=60)
            at = time.time()
            try:
                self._conn.request("POST", PATH, body=body, headers=HEADERS)
                response = self._conn.getresponse()
                return Sent(at, response.status, response.read())
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Pacer(threading.Thread):
    """Sends (offset in seconds, body) pairs at their offsets from its start, on one
    connection, until the schedule ends or `stop()`. A body that is due while the previous
    one is still being answered goes late; `max_late` says by how much at worst."""

    def __init__(self, port: int, schedule: Iterable[tuple[float, bytes]], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._port = port
        self._schedule = schedule
        self._halt = threading.Event()
        self.sent: list[Sent] = []
        self.max_late = 0.0
        self.error: str | None = None

    def stop(self, timeout: float = 70.0) -> None:
        """Send nothing more, and wait for the request in flight (if it was started)."""
        self._halt.set()
        if self.ident is not None:
            self.join(timeout)

    def run(self) -> None:
        """Send the schedule."""
        client = Client(self._port)
        started = time.monotonic()
        try:
            for offset, body in self._schedule:
                wait = started + offset - time.monotonic()
                if self._halt.wait(max(wait, 0.0)):
                    break
                self.max_late = max(self.max_late, -wait)
                self.sent.append(client.post(body))
        except (OSError, http.client.HTTPException) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()

    def rejected(self) -> int:
        """Bodies not answered 200 "accepted"."""
        return sum(1 for s in self.sent if s.status != 200 or b'"accepted"' not in s.answer)


def alert(name: str, service: str, severity: str, **labels: str) -> dict[str, Any]:
    """One Alertmanager alert that started now."""
    base = {"alertname": name, "service": service, "severity": severity}
    return am_alert({**base, **labels}, starts_at=datetime.now(UTC))


def body(alerts: list[dict[str, Any]]) -> bytes:
    """An Alertmanager webhook body around the alerts."""
    return orjson.dumps(am_payload(alerts))


def background(rate: float) -> Iterator[tuple[float, bytes]]:
    """Bodies of PER_BODY info alerts, `rate` alerts a second, round after round of a pool."""
    pool = [
        {
            "alertname": "Background",
            "service": f"bg-{i % BACKGROUND_SERVICES:02d}",
            "severity": "info",
            "instance": f"bg-{i:04d}:9100",
        }
        for i in range(BACKGROUND_POOL)
    ]
    started = datetime.now(UTC)
    n = 0
    while True:
        alerts = [
            am_alert(
                pool[(n * PER_BODY + j) % BACKGROUND_POOL],
                starts_at=started,
                annotations={"round": str((n * PER_BODY + j) // BACKGROUND_POOL)},
            )
            for j in range(PER_BODY)
        ]
        yield n * PER_BODY / rate, body(alerts)
        n += 1


def storm_schedule(channels: int) -> tuple[list[tuple[float, bytes]], dict[str, int]]:
    """The storm's bodies (offset, body), and per service the body of its first alert."""
    due: dict[int, list[tuple[str, int]]] = {}
    for s in range(STORM_SERVICES):
        for k in range(STORM_PER_SERVICE):
            offset = (k + s / STORM_SERVICES) * STORM_SECONDS / STORM_PER_SERVICE
            due.setdefault(int(offset / STORM_TICK), []).append((f"storm-{s:03d}", k))
    schedule: list[tuple[float, bytes]] = []
    first_body: dict[str, int] = {}
    for tick, alerts in sorted(due.items()):
        for service, _ in alerts:
            first_body.setdefault(service, len(schedule))
        lane = {service: str(int(service[-3:]) % channels) for service, _ in alerts}
        schedule.append(
            (
                tick * STORM_TICK,
                body(
                    [
                        alert("StormError", s, "error", lane=lane[s], instance=f"{s}-{k:02d}")
                        for s, k in alerts
                    ]
                ),
            )
        )
    return schedule, first_body


# The fake Slack's side ---------------------------------------------------------------


def kind(request: Request) -> str:
    """post (top-level chat.postMessage), reply (in a thread), update, or the method."""
    if request.method == "chat.postMessage":
        return "reply" if request.body.get("thread_ts") else "post"
    if request.method == "chat.update":
        return "update"
    return request.method


def channel(request: Request, ids: dict[str, str]) -> str:
    """The channel id a request is for (posts name the channel, replies and edits its id)."""
    target = str(request.body.get("channel", ""))
    return ids.get(target.lstrip("#"), target)


def mentioned(request: Request, pattern: re.Pattern[str]) -> list[str]:
    """The names matching `pattern` in the request's text, else anywhere in its body."""
    found = pattern.findall(str(request.body.get("text", "")))
    return found or pattern.findall(json.dumps(request.body))


def first_mention(requests: Sequence[Request], pattern: re.Pattern[str]) -> dict[str, Request]:
    """For each name matching `pattern`, the first request that mentions it."""
    first: dict[str, Request] = {}
    for request in requests:
        for name in set(mentioned(request, pattern)):
            first.setdefault(name, request)
    return first


def most_in_window(times: Sequence[float], width: float) -> int:
    """The most times in any window [t, t + width)."""
    ordered = sorted(times)
    best = 0
    lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def min_gap(times: Sequence[float]) -> float | None:
    """The shortest time between two consecutive times; None with fewer than two."""
    ordered = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    return min(gaps) if gaps else None


def percentile(values: Sequence[float], q: float) -> float:
    """The value at quantile q (0..1), as tests/bench/httpload.py takes it; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class SlackTraffic:
    """The fake's requests after a storm, counted the way Slack limits them."""

    by_kind: Counter[str] = field(default_factory=Counter)
    # Per channel id: the most chat.postMessage calls (top-level and replies) in any 1 s,
    # and the shortest gap between two of them.
    posts_per_second: dict[str, int] = field(default_factory=dict)
    post_gap: dict[str, float | None] = field(default_factory=dict)
    updates_per_minute: int = 0
    first_page: dict[str, float] = field(default_factory=dict)  # name -> arrival
    top_level: Counter[str] = field(default_factory=Counter)  # name -> top-level posts


def slack_traffic(
    requests: Sequence[Request], ids: dict[str, str], pattern: re.Pattern[str]
) -> SlackTraffic:
    """Count the requests to the channels in `ids` (name -> id); a top-level post is the
    first page of the names matching `pattern` in its text."""
    out = SlackTraffic()
    wanted = set(ids.values())
    posts: dict[str, list[float]] = {where: [] for where in wanted}
    updates = []
    for request in requests:
        where = channel(request, ids)
        if where not in wanted:
            continue
        what = kind(request)
        out.by_kind[what] += 1
        if what in ("post", "reply"):
            posts[where].append(request.at)
        if what == "update":
            updates.append(request.at)
        if what == "post":
            for name in set(mentioned(request, pattern)):
                out.top_level[name] += 1
                out.first_page.setdefault(name, request.at)
    for where, times in sorted(posts.items()):
        out.posts_per_second[where] = most_in_window(times, 1.0)
        out.post_gap[where] = min_gap(times)
    out.updates_per_minute = most_in_window(updates, 60.0)
    return out
