"""`wait` and `check`: pause a run, and probe a URL until it answers as expected.

Both wait with `ctx.sleep`, so a test (or a dry run) can pass a sleep that returns at once.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, field_validator

from . import register
from ._http import check_statuses, check_url, read_body, status_text, text_of, tls
from .base import ActionContext, ActionError, ActionResult, Params


class WaitParams(Params):
    """How long to wait."""

    seconds: float = Field(gt=0, le=3600)


class Wait:
    """Pause the run, e.g. to let a restart settle before checking."""

    name: ClassVar[str] = "wait"
    params: ClassVar[type[Params]] = WaitParams

    def idempotent(self, params: WaitParams) -> bool:
        """Waiting twice harms nothing."""
        return True

    def describe(self, params: WaitParams) -> str:
        """E.g. "wait 30 s"."""
        return f"wait {params.seconds:g} s"

    def run(self, params: WaitParams, ctx: ActionContext) -> ActionResult:
        """Sleep, unless the wait could never finish within the step's timeout."""
        if params.seconds > ctx.timeout:
            raise ActionError(
                f"a wait of {params.seconds:g} s does not fit in the step's timeout of "
                f"{ctx.timeout:g} s: give the step a longer timeout"
            )
        ctx.sleep(params.seconds)
        return ActionResult(result={"waited_seconds": params.seconds})


class CheckParams(Params):
    """What to probe, what counts as healthy, and how patiently."""

    url: str
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: int | list[int] = 200
    # Healthy only when the start of the body (up to max_output_bytes) contains this.
    body_contains: str | None = None
    verify_tls: bool = True
    # A pause before the first probe.
    wait_seconds: float = Field(default=0, ge=0, le=3600)
    attempts: int = Field(default=1, ge=1, le=100)
    interval_seconds: float = Field(default=5, ge=0, le=3600)

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("expect_status")
    @classmethod
    def _check_status(cls, value: int | list[int]) -> int | list[int]:
        check_statuses(value)
        return value

    @field_validator("body_contains")
    @classmethod
    def _check_contains(cls, value: str | None) -> str | None:
        if value == "":
            raise ValueError("body_contains must not be empty (leave it out instead)")
        return value


class Check:
    """Probe a URL until it answers as expected, or give up after `attempts` probes."""

    name: ClassVar[str] = "check"
    params: ClassVar[type[Params]] = CheckParams

    def idempotent(self, params: CheckParams) -> bool:
        """A probe only reads."""
        return True

    def describe(self, params: CheckParams) -> str:
        """E.g. "check GET https://svc/healthz answers 200, up to 5 probes 10 s apart"."""
        expected = status_text(check_statuses(params.expect_status))
        text = f"check {params.method} {params.url} answers {expected}"
        if params.body_contains is not None:
            text += f" containing {params.body_contains!r}"
        if params.wait_seconds:
            text += f", after waiting {params.wait_seconds:g} s"
        if params.attempts > 1:
            text += f", up to {params.attempts} probes {params.interval_seconds:g} s apart"
        return text

    def run(self, params: CheckParams, ctx: ActionContext) -> ActionResult:
        """Wait, then probe until the condition holds; fail when it never did."""
        waits = params.wait_seconds + (params.attempts - 1) * params.interval_seconds
        if waits >= ctx.timeout:
            raise ActionError(
                f"check waits {waits:g} s in all (wait_seconds, and interval_seconds between "
                f"{params.attempts} attempts), which does not fit in the step's timeout of "
                f"{ctx.timeout:g} s"
            )
        expected = check_statuses(params.expect_status) or []
        limit = ctx.settings.playbooks.max_output_bytes
        # The time the probes took, on the real clock; the waits are counted as planned,
        # since an injected sleep may not take them.
        spent = 0.0
        if params.wait_seconds:
            ctx.sleep(params.wait_seconds)
        status: int | None = None
        error = ""
        output = ""
        attempt = 0
        # One client for all probes: building its TLS context costs more than a probe.
        with httpx.Client(follow_redirects=False, verify=tls(params.verify_tls)) as client:
            for attempt in range(1, params.attempts + 1):
                if attempt > 1:
                    ctx.sleep(params.interval_seconds)
                started = time.monotonic()
                budget = ctx.timeout - waits - spent
                status, error, output = _probe(client, params, budget, limit)
                spent += time.monotonic() - started
                if _healthy(params, expected, status, error, output):
                    result = {"ok": True, "status": status, "attempts": attempt}
                    return ActionResult(result=result, output=output)
        if error:
            last = error
        elif status not in expected:
            last = f"last status {status}, expected {status_text(expected)}"
        else:
            last = f"last status {status}, but the body did not contain {params.body_contains!r}"
        raise ActionError(
            f"check of {params.url} failed after {attempt} attempt(s): {last}",
            result={"ok": False, "status": status, "attempts": attempt},
            output=output,
        )


def _healthy(
    params: CheckParams, expected: list[int], status: int | None, error: str, text: str
) -> bool:
    """Whether one probe's answer meets the check's condition."""
    if error or status not in expected:
        return False
    return params.body_contains is None or params.body_contains in text


def _probe(
    client: httpx.Client, params: CheckParams, budget: float, limit: int
) -> tuple[int | None, str, str]:
    """One probe: (status or None, what was wrong or "", the start of the body)."""
    if budget <= 0:
        return None, "the step's timeout ran out before this probe", ""
    deadline = time.monotonic() + budget
    try:
        with client.stream(params.method, params.url, timeout=budget) as response:
            body = read_body(response, limit, deadline)
    except ActionError as exc:
        return None, exc.message, ""
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}".rstrip(": "), ""
    return response.status_code, "", text_of(body.data, limit)


register(Wait())
register(Check())
