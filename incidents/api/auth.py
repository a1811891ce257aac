"""The API key: checking an Authorization header, and recording refused credentials.

A refusal is counted in `incidents_ingest_rejected_total` and logged at WARNING with the
client address, the path and the scheme that was tried, never the secret. The log is
rate-limited per client address, so a misconfigured sender cannot flood it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from incidents.metrics import INGEST_REJECTED

log = logging.getLogger("incidents.auth")

# Two challenges, one per scheme we accept (RFC 9110 allows several).
CHALLENGES = ('Bearer realm="incidents"', 'Basic realm="incidents", charset="UTF-8"')

# Ingest endpoints by path; every other endpoint is labelled "api" in the metric.
INGEST_SOURCES = {
    "/api/v1/alerts/alertmanager": "alertmanager",
    "/api/v1/alerts": "generic",
}

# Past this many remembered addresses, entries older than the interval are dropped.
_MAX_TRACKED = 10_000


def route_path(scope: Mapping[str, Any]) -> str:
    """The path as the router matches it: without the proxy prefix (root_path), if any."""
    path: str = scope["path"]
    root = scope.get("root_path")
    if root and path.startswith(root):
        return path[len(root) :]
    return path


def source_of(method: str, path: str) -> str:
    """The `source` label of a request: its ingest source, or "api" for other endpoints."""
    if method == "POST":
        return INGEST_SOURCES.get(path.rstrip("/") or "/", "api")
    return "api"


def scheme_of(header: str) -> str:
    """The scheme a caller tried, as a fixed word safe to log ("none" when absent)."""
    if not header:
        return "none"
    scheme = header.partition(" ")[0].lower()
    return scheme if scheme in ("bearer", "basic") else "unsupported"


def presented_credential(header: str) -> tuple[str, str | None]:
    """The credential in an Authorization header (Bearer, or basic auth's password), and
    why there is none when there is none."""
    if not header:
        return "", "missing Authorization header (Bearer token or basic auth)"
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    presented = ""
    if scheme == "bearer":
        presented = credentials.strip()
    elif scheme == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", "malformed basic credentials"
        presented = decoded.partition(":")[2]
    if not presented:
        return "", "invalid credentials"
    return presented, None


def check_authorization(header: str, expected: str) -> str | None:
    """None when the header carries the token (Bearer, or basic auth's password); else why not."""
    if not expected:
        return None
    presented, problem = presented_credential(header)
    if problem is not None:
        return problem
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        return "invalid credentials"
    return None


class RefusalLog:
    """Counts every refused request and logs it, at most one line per address per interval."""

    def __init__(
        self, interval_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval_seconds
        self.clock = clock
        # address -> (time of its last logged line, refusals suppressed since then)
        self._seen: dict[str, tuple[float, int]] = {}

    def record(self, status: int, client: str, method: str, path: str, scheme: str) -> None:
        """Count one 401/403 and log it unless this address was logged within the interval."""
        INGEST_REJECTED.labels(source_of(method, path), str(status)).inc()
        now = self.clock()
        last = self._seen.get(client)
        if last is not None and now - last[0] < self.interval:
            self._seen[client] = (last[0], last[1] + 1)
            return
        suppressed = last[1] if last is not None else 0
        if len(self._seen) >= _MAX_TRACKED:
            self._forget(now)
        self._seen[client] = (now, 0)
        log.warning(
            "refused credentials (%s) from %s: %s %s tried %s; %d similar lines suppressed",
            status,
            client,
            method,
            path,
            scheme,
            suppressed,
            extra={
                "client": client,
                "path": path,
                "scheme": scheme,
                "status": status,
                "suppressed": suppressed,
            },
        )

    def _forget(self, now: float) -> None:
        stale = [k for k, (at, _) in self._seen.items() if now - at >= self.interval]
        for key in stale:
            del self._seen[key]
        if len(self._seen) >= _MAX_TRACKED:
            # Many addresses inside one interval: forget them all rather than grow.
            self._seen.clear()
