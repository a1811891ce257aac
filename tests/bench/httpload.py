"""A small HTTP/1.1 keep-alive load generator on raw asyncio.

It shares two cores with the server and PostgreSQL, so it does as little as it can per
request: the request bytes are encoded before the clock starts, each connection has one
request in flight, and a response is parsed only as far as its status line and
Content-Length. Every run is bounded by a request count and by a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

ACCEPTED = b'"status":"accepted"'
# How long after its deadline a phase may run before its connections are cut.
GRACE_SECONDS = 30.0


def encode_post(host: str, port: int, path: str, body: bytes, token: str) -> bytes:
    """One complete HTTP/1.1 POST request, ready to write to a socket."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._body_at = -1
        self._need = -1
        self._status = 0
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self._buf += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._need < 0:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).lower()
            self._status = int(head[9:12])
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                waiter.set_exception(ConnectionError("response without Content-Length"))
                return
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            self._body_at = end + 4
            self._need = self._body_at + length
        if len(self._buf) >= self._need:
            body = bytes(self._buf[self._body_at : self._need])
            del self._buf[: self._need]
            self._need = -1
            self._waiter = None
            waiter.set_result((self._status, body))

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Send one request; the future resolves to (status, body)."""
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        if self.transport is None:
            waiter.set_exception(ConnectionError("connection is closed"))
            return waiter
        self._waiter = waiter
        self.transport.write(data)
        return waiter


@dataclass
class LoadResult:
    """What one load phase did."""

    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)  # indices of requests answered "accepted"
    statuses: Counter[int] = field(default_factory=Counter)
    not_accepted: int = 0  # 2xx answers that did not say "accepted" (e.g. "duplicate")
    errors: int = 0  # connection failures
    first_problem: str | None = None

    @property
    def completed(self) -> int:
        """Requests that got an answer of any status."""
        return sum(self.statuses.values())

    def percentile(self, q: float) -> float:
        """Latency at quantile q (0..1) in seconds; 0 without samples."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _connect(host: str, port: int, count: int) -> list[_Connection]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(count):
        _, proto = await loop.create_connection(_Connection, host, port)
        conns.append(proto)
    return conns


async def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    concurrency: int,
    duration: float,
    rate: float | None = None,
) -> LoadResult:
    """Send requests in order over `concurrency` connections until all are sent or time is up.

    Without `rate` it is a closed loop: each connection sends its next request as soon as
    the previous one is answered. With `rate` (requests per second) request i is due at
    start + i / rate and its latency counts from that moment, so a slow server is charged
    for the requests that queued behind it; what is not sent by the deadline is left out.
    """
    result = LoadResult()
    conns = await _connect(host, port, concurrency)
    limit = len(requests)
    if rate is not None:
        limit = min(limit, int(rate * duration))
    next_index = 0
    started = time.perf_counter()
    deadline = started + duration

    async def worker(conn: _Connection) -> None:
        nonlocal next_index
        while next_index < limit:
            index = next_index
            next_index += 1
            if rate is not None:
                due = started + index / rate
                now = time.perf_counter()
                if now >= deadline:
                    return  # a server slower than the offered rate leaves the rest unsent
                if due > now:
                    await asyncio.sleep(due - now)
            else:
                due = time.perf_counter()
                if due >= deadline:
                    return
            try:
                status, body = await conn.request(requests[index])
            except ConnectionError as exc:
                result.errors += 1
                result.first_problem = result.first_problem or f"request {index}: {exc}"
                return
            result.latencies.append(time.perf_counter() - due)
            result.statuses[status] += 1
            if status == 200 and ACCEPTED in body:
                result.accepted.append(index)
            else:
                result.not_accepted += 1
                if result.first_problem is None:
                    result.first_problem = f"request {index}: HTTP {status} {body[:300]!r}"

    tasks = [asyncio.create_task(worker(c)) for c in conns]
    _, pending = await asyncio.wait(tasks, timeout=duration + GRACE_SECONDS)
    result.elapsed = time.perf_counter() - started
    for task in pending:
        task.cancel()
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    if pending:
        await asyncio.wait(pending)
        result.first_problem = result.first_problem or "phase overran its deadline; cut off"
    return result


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with uvicorn[standard]): less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
