"""What `http.request` and `check` share: URL and status checks, and reading a response
without holding more of it than a step may keep."""

from __future__ import annotations

import functools
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from .base import ActionTimeout


@functools.lru_cache(maxsize=1)
def _verifying_context() -> ssl.SSLContext:
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def tls(verify: bool) -> ssl.SSLContext | bool:
    """httpx's `verify` for a step: one shared context, its CA bundle read once. (Each
    new client would read it again: about 45 ms, most of a quick step's time.)"""
    return _verifying_context() if verify else False


# Statuses worth another attempt: throttled, or a proxy that could not reach its upstream.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


def check_url(value: str) -> str:
    """An absolute http(s) URL with a host, or a ValueError saying what is wrong."""
    value = value.strip()
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"the URL must start with http:// or https:// (got {parts.scheme!r})")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if any(c in value for c in "\r\n\t ") or any(ord(c) < 32 for c in value):
        raise ValueError("the URL contains whitespace or control characters")
    try:
        httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    return value


def check_statuses(value: int | list[int] | None) -> list[int] | None:
    """Normalise `expect_status` to a list of HTTP statuses (None stays None)."""
    if value is None:
        return None
    statuses = [value] if isinstance(value, int) else list(value)
    if not statuses:
        raise ValueError("expect_status must name at least one status")
    for status in statuses:
        if not 100 <= status <= 599:
            raise ValueError(f"{status} is not an HTTP status (100-599)")
    return statuses


def status_text(statuses: list[int] | None) -> str:
    """How an expected-status list reads in a message."""
    if statuses is None:
        return "any 2xx"
    return " or ".join(str(s) for s in statuses)


def certificate_rejected(exc: BaseException) -> bool:
    """Whether an httpx error comes from a server certificate that failed verification."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def text_of(data: bytes, limit: int) -> str:
    """The first `limit` bytes as text; a character cut in half is dropped."""
    return data[:limit].decode("utf-8", errors="ignore" if len(data) > limit else "replace")


@dataclass(frozen=True)
class Body:
    """The start of a response body: at most `limit` bytes, and whether there was more."""

    data: bytes
    truncated: bool


def read_body(response: httpx.Response, limit: int, deadline: float) -> Body:
    """Read up to `limit` bytes of a streamed response, before the monotonic `deadline`.

    httpx's timeout bounds each read, not the whole body: a server that trickles bytes
    would otherwise keep the step past its timeout.
    """
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise ActionTimeout("the response body did not arrive within the step's timeout")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return Body(b"".join(chunks)[:limit], truncated=True)
    return Body(b"".join(chunks), truncated=False)
