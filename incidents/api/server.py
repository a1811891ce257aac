"""uvicorn's options for `incidents serve`: connection limit, keep-alive, header deadline.

uvicorn bounds idle keep-alive connections and concurrent connections, but it waits for
a request's head (request line and headers) forever: a client that connects and trickles
its headers, or sends nothing, holds a connection indefinitely. The protocol classes here
are uvicorn's own with one addition: from connection (or from the first byte of a later
request on a kept-alive connection) the complete head must arrive within
`http.header_timeout_seconds`. Otherwise the client gets a 408 (or, if it sent nothing
at all, the connection is just closed). The body has its own deadline in the guard.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from incidents.config import HttpSettings

_TIMEOUT_BODY = b"the request headers did not arrive in time\n"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n"
    b"\r\n%s"
) % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)


class HeadDeadline(asyncio.Protocol):
    """Mixin for a uvicorn HTTP/1.1 protocol class: a deadline for each request head."""

    head_timeout: float = 10.0
    # Provided by the uvicorn protocol class this is mixed into.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    _head_timer: asyncio.TimerHandle | None = None
    _head_begun = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the clock for the first request's head."""
        super().connection_made(transport)
        self._head_begun = False
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; stop the clock once a head is complete, start it for a new one."""
        before = self.cycle
        idle = before is None or before.response_complete
        super().data_received(data)
        if not idle:
            return  # a body, or pipelined requests behind one in progress
        if self.cycle is not before:
            self._stop_clock()
        elif data:
            self._head_begun = True
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the clock with the connection."""
        self._stop_clock()
        super().connection_lost(exc)

    def _stop_clock(self) -> None:
        self._head_begun = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed already, or handed over (a WebSocket upgrade)
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served; its body has its own deadline
        if self._head_begun:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def _protocol_class(head_timeout: float) -> type[asyncio.Protocol]:
    base: type[asyncio.Protocol]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    except ImportError:  # httptools is optional in uvicorn; h11 always comes with it
        base = H11Protocol
    return type(
        f"{base.__name__}WithHeadDeadline", (HeadDeadline, base), {"head_timeout": head_timeout}
    )


def uvicorn_options(http: HttpSettings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run`/`uvicorn.Config` that apply the `http` settings."""
    return {
        "http": _protocol_class(http.header_timeout_seconds),
        "limit_concurrency": http.max_connections,
        "timeout_keep_alive": http.keep_alive_timeout_seconds,
    }
