"""`http.request`: one HTTP request to a URL the playbook names.

Request headers often carry credentials, so they appear nowhere the step is recorded:
not in the result, the output, the error messages or `describe`.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, field_validator

from . import register
from ._http import (
    RETRYABLE_STATUSES,
    certificate_rejected,
    check_statuses,
    check_url,
    read_body,
    status_text,
    text_of,
    tls,
)
from .base import ActionContext, ActionError, ActionResult, ActionTimeout, Params

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# RFC 9110: the methods that mean the same thing when sent twice.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class HttpRequestParams(Params):
    """What to send, and which answer counts as success."""

    method: Method = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    # A dict or list is sent as JSON; a string as it is.
    body: str | dict[str, Any] | list[Any] | None = None
    # None: any 2xx status is success.
    expect_status: int | list[int] | None = None
    verify_tls: bool = True
    # None: decided by the method (POST and PATCH are not safe to repeat).
    idempotent: bool | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        # The messages name the header, never its value: it may be a secret.
        for name, header in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if any(c in header for c in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains a line break or NUL")
            if not all(c == "\t" or 32 <= ord(c) < 127 for c in header):
                # httpx would refuse it with an error that quotes the value.
                raise ValueError(
                    f"the value of header {name!r} must be printable ASCII (no control characters)"
                )
        return value

    @field_validator("expect_status")
    @classmethod
    def _check_status(cls, value: int | list[int] | None) -> int | list[int] | None:
        return check_statuses(value)


class HttpRequest:
    """Send one HTTP request; fail unless the status is the expected one."""

    name: ClassVar[str] = "http.request"
    params: ClassVar[type[Params]] = HttpRequestParams

    def idempotent(self, params: HttpRequestParams) -> bool:
        """The step's own `idempotent`, else whether its method is idempotent."""
        if params.idempotent is not None:
            return params.idempotent
        return params.method in IDEMPOTENT_METHODS

    def describe(self, params: HttpRequestParams) -> str:
        """E.g. "POST https://example.com/hook (expecting any 2xx)"."""
        body = "" if params.body is None else " with a body"
        expected = status_text(check_statuses(params.expect_status))
        return f"{params.method} {params.url}{body} (expecting {expected})"

    def run(self, params: HttpRequestParams, ctx: ActionContext) -> ActionResult:
        """Send the request and read at most `max_output_bytes` of the answer."""
        limit = ctx.settings.playbooks.max_output_bytes
        expected = check_statuses(params.expect_status)
        content: str | None = params.body if isinstance(params.body, str) else None
        json_body = None if params.body is None or content is not None else params.body
        started = time.monotonic()
        deadline = started + ctx.timeout
        what = f"{params.method} {params.url}"
        try:
            with (
                httpx.Client(
                    timeout=ctx.timeout, follow_redirects=False, verify=tls(params.verify_tls)
                ) as client,
                client.stream(
                    params.method,
                    params.url,
                    headers=params.headers,
                    content=content,
                    json=json_body,
                ) as response,
            ):
                body = read_body(response, limit, deadline)
                status = response.status_code
                content_type = response.headers.get("content-type", "")
                retry_after = _seconds(response.headers.get("retry-after"))
        except ActionTimeout as exc:
            raise ActionTimeout(f"{what}: {exc.message}") from None
        except httpx.TimeoutException:
            raise ActionTimeout(f"{what}: no answer within {ctx.timeout:g} s") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ActionError(f"{what}: {exc}") from None
        except httpx.ConnectError as exc:
            if certificate_rejected(exc):
                # A certificate does not become valid on the next attempt.
                raise ActionError(
                    f"{what}: the server's TLS certificate was rejected ({exc}); set "
                    "verify_tls: false only for a server you trust without it"
                ) from None
            raise ActionError(f"{what}: ConnectError: {exc}", retryable=True) from None
        except httpx.TransportError as exc:
            # Connection refused or reset, DNS failure: worth another attempt.
            raise ActionError(f"{what}: {type(exc).__name__}: {exc}", retryable=True) from None
        except httpx.HTTPError as exc:
            # A body that does not decode (bad gzip, say): another attempt would not help.
            raise ActionError(f"{what}: {type(exc).__name__}: {exc}") from None

        result: dict[str, Any] = {
            "status": status,
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
        }
        if retry_after is not None:
            # The runner may wait this long before retrying a 429 or 503.
            result["retry_after_seconds"] = retry_after
        if not body.truncated and "json" in content_type.lower() and body.data:
            with contextlib.suppress(ValueError):
                result["json"] = json.loads(body.data)
        output = text_of(body.data, limit)
        ok = 200 <= status < 300 if expected is None else status in expected
        if not ok:
            raise ActionError(
                f"{what} answered {status}, expected {status_text(expected)}",
                retryable=status in RETRYABLE_STATUSES,
                result=result,
                output=output,
            )
        return ActionResult(result=result, output=output)


def _seconds(value: str | None) -> float | None:
    """A Retry-After given in seconds (an HTTP date is ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 86400 else None


register(HttpRequest())
