"""Request id, access log, latency metrics and refused credentials, as plain ASGI middleware."""

from __future__ import annotations

import itertools
import logging
import os
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incidents.logging import request_id_var
from incidents.metrics import REQUEST_LATENCY

from .auth import RefusalLog, route_path, scheme_of

log = logging.getLogger("incidents.access")

# Unique across processes and restarts without a random draw per request.
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)
# The status logged for a request whose client went away before any answer (as nginx does).
CLIENT_CLOSED = 499


class RequestContextMiddleware:
    """Gives each request an id (or keeps the caller's X-Request-ID) and times it.

    Every 401 and 403, whichever layer answered it, is counted and logged (rate-limited)
    here, so a wrong key is visible in the metrics and the log.
    """

    def __init__(self, app: ASGIApp, refusals: RefusalLog | None = None) -> None:
        self.app = app
        self.refusals = refusals or RefusalLog(60.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
                break
        if not request_id:
            request_id = f"{_PREFIX}{next(_COUNTER):08x}"
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        answered = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client left mid-body: nobody to answer and nothing wrong on our side.
            if not answered:
                status = CLIENT_CLOSED
        finally:
            elapsed = time.perf_counter() - started
            if status == 401 or status == 403:
                self._refused(scope, status)
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            REQUEST_LATENCY.labels(scope["method"], path, str(status)).observe(elapsed)
            if log.isEnabledFor(logging.INFO) and path not in ("/healthz", "/metrics"):
                log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
                )
            request_id_var.reset(token)

    def _refused(self, scope: Scope, status: int) -> None:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        client = scope.get("client")
        self.refusals.record(
            status,
            client[0] if client else "unknown",
            scope["method"],
            route_path(scope),
            scheme_of(header.decode("latin-1")),
        )
