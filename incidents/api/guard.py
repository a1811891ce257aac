"""The gate in front of /api/: the key first, then a bounded, timed request body.

FastAPI reads and parses a body before any dependency runs, so a check in a dependency
comes after the work it should prevent. This plain ASGI middleware runs before FastAPI:

- a request without a valid key (the bootstrap token or an API key, see
  incidents.api.credentials) gets its 401 before a byte of its body is read; one whose
  key cannot be checked because the database is down gets a 503, so senders retry;
  an accepted request carries its Principal in scope["state"] for the routes' scope
  checks (incidents.api.principal);
- a body declared (Content-Length) over the route's limit gets a 413 at once; a chunked
  body is counted as it streams and refused once it passes the limit;
- a client that stops sending its body gets a 408 after `http.body_timeout_seconds`;
- a compressed body on an endpoint that does not decode it gets a 415 with a hint.

Everything outside /api/ (health, readiness, metrics, the docs) passes untouched. A
provider's callback cannot carry our key: those paths (Twilio's status callback, SMS
and voice webhooks, Slack's button presses under /api/v1/integrations/) skip the key
check, keep the body limits, and their handler checks the provider's signature.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incidents.acting import SLACK_ACTIONS_PATH, TWILIO_SMS_PATH, TWILIO_VOICE_PATH
from incidents.config import Settings
from incidents.exceptions import Unauthorized
from incidents.metrics import INGEST_REJECTED
from incidents.notify.channels.twilio_client import STATUS_CALLBACK_PATH
from incidents.warroom.settings import SLACK_EVENTS_PATH

from .auth import CHALLENGES, route_path, source_of
from .credentials import Authenticator
from .principal import PRINCIPAL
from .responses import JsonResponse

log = logging.getLogger(__name__)

# Set in scope["state"] once the guard has accepted the key; check_token trusts it.
AUTHENTICATED = "authenticated"

GRAPH_PATH = "/api/v1/services/graph"
# The ingest endpoints decode gzip themselves; everywhere else a body must be identity.
DECODING_PATHS = frozenset({"/api/v1/alerts", "/api/v1/alerts/alertmanager"})
# POSTed by a provider that signs its requests instead of sending our key.
# (Slack's Events API: the P0 war room's messages, see incidents.api.slack_events.)
SIGNED_PATHS = frozenset(
    {
        STATUS_CALLBACK_PATH,
        SLACK_ACTIONS_PATH,
        TWILIO_SMS_PATH,
        TWILIO_VOICE_PATH,
        SLACK_EVENTS_PATH,
    }
)


_ERRORS = {413: "payload_too_large", 415: "unsupported_media_type"}


class BodyRefused(StarletteHTTPException):
    """A request body over its limit (413) or too slow to arrive (408).

    Raised from inside `receive`, so from whatever code is reading the body. Being an
    HTTPException, FastAPI's body parsing lets it through instead of turning it into a 400;
    the handler `install_guard` registers renders it as our usual error body.
    """

    def __init__(self, status_code: int, error: str, message: str) -> None:
        super().__init__(status_code, message, {"Connection": "close"})
        self.error = error
        self.message = message


def _json(status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]]) -> list[Message]:
    content = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        *extra,
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": content},
    ]


class _Expiry:
    """Cancels a task waiting for its body, and remembers that it did."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


class GuardMiddleware:
    """Authenticates /api/ requests and bounds their bodies in size and time."""

    def __init__(self, app: ASGIApp, settings: Settings, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator
        self.ingest_limit = settings.ingest.max_body_bytes
        self.default_limit = settings.http.max_body_bytes
        self.graph_limit = settings.http.graph_max_body_bytes
        self.body_timeout = settings.http.body_timeout_seconds

    def limit_for(self, method: str, path: str) -> int:
        """The body limit of one route, in bytes."""
        if method == "POST" and path in DECODING_PATHS:
            return self.ingest_limit
        if path == GRAPH_PATH and method == "PUT":
            return self.graph_limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if not path.startswith("/api/"):
            await self.app(scope, receive, send)
            return
        authorization = length = encoding = b""
        chunked = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"content-encoding":
                encoding = value
        # Answering before the body is read: the connection closes so the unread body
        # cannot be taken for the next request, and the client stops sending it.
        has_body = chunked or length not in (b"", b"0")
        close = [(b"connection", b"close")] if has_body else []
        method = scope["method"]
        signed = method == "POST" and path in SIGNED_PATHS
        if not signed:
            try:
                principal = await self.authenticator.authenticate(authorization.decode("latin-1"))
            except Unauthorized as exc:
                headers = [(b"www-authenticate", c.encode()) for c in CHALLENGES]
                body = {"error": "unauthorized", "message": exc.message}
                await _send(send, _json(401, body, headers + close))
                return
            except SQLAlchemyError as exc:
                # 503, never 500: Alertmanager retries a 5xx but this one is not our bug.
                log.warning("cannot check an API key: database error %s", type(exc).__name__)
                body = {
                    "error": "unavailable",
                    "message": "cannot check the API key: the database is unavailable; "
                    "retry shortly",
                }
                await _send(send, _json(503, body, [(b"retry-after", b"5"), *close]))
                return
            state = scope.setdefault("state", {})
            state[AUTHENTICATED] = True
            state[PRINCIPAL] = principal
        if not has_body:
            await self.app(scope, receive, send)
            return
        decodes = method == "POST" and path in DECODING_PATHS
        if encoding and encoding.strip().lower() != b"identity" and not decodes:
            message = (
                f"Content-Encoding {encoding.decode('latin-1')[:40]!r} is not accepted here; "
                "send the body uncompressed (only the alert ingest endpoints decode gzip)"
            )
            await _refuse(send, source_of(method, path), 415, message, close)
            return
        limit = self.limit_for(method, path)
        if length.isdigit() and int(length) > limit:
            message = f"body of {int(length)} bytes is over the limit of {limit} bytes"
            await _refuse(send, source_of(method, path), 413, message, close)
            return
        # With a Content-Length the server itself stops at the declared size: only a
        # chunked body needs counting.
        await self.app(scope, self._bounded(receive, limit if chunked else 0), send)

    def _bounded(self, receive: Receive, limit: int) -> Receive:
        """`receive` with a deadline per body chunk and, for chunked bodies, a size limit."""
        timeout = self.body_timeout
        received = 0
        done = False

        async def bounded_receive() -> Message:
            nonlocal received, done
            if done:
                # The body is complete; later calls wait for a disconnect, without deadline.
                return await receive()
            # A bare timer that cancels this task: asyncio.timeout() costs several times
            # more, and this runs for every ingested request.
            task = asyncio.current_task()
            assert task is not None
            expired = _Expiry(task)
            timer = asyncio.get_running_loop().call_later(timeout, expired.fire)
            try:
                message = await receive()
            except asyncio.CancelledError:
                if not expired.fired:
                    raise
                task.uncancel()
                raise BodyRefused(
                    408,
                    "request_timeout",
                    f"no part of the request body arrived for {timeout:g} seconds",
                ) from None
            finally:
                timer.cancel()
            if message["type"] != "http.request":
                done = True
                return message
            if not message.get("more_body", False):
                done = True
            if limit:
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyRefused(
                        413,
                        "payload_too_large",
                        f"body is over the limit of {limit} bytes",
                    )
            return message

        return bounded_receive


async def _send(send: Send, messages: list[Message]) -> None:
    for message in messages:
        await send(message)


async def _refuse(
    send: Send, source: str, status: int, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    INGEST_REJECTED.labels(source, str(status)).inc()
    body = {"error": _ERRORS[status], "message": message, "field": "body"}
    await _send(send, _json(status, body, headers))


async def _body_refused(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, BodyRefused)
    source = source_of(request.method, route_path(request.scope))
    INGEST_REJECTED.labels(source, str(exc.status_code)).inc()
    return JsonResponse(
        {"error": exc.error, "message": exc.message, "field": "body"},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def install_guard(app: FastAPI, settings: Settings) -> None:
    """Put the guard in front of the routes, and render the refusals it raises."""
    authenticator = Authenticator(settings, app.state.service.sessions)
    app.state.authenticator = authenticator  # for check_token, and revocations to reset
    app.add_exception_handler(BodyRefused, _body_refused)
    app.add_middleware(GuardMiddleware, settings=settings, authenticator=authenticator)
