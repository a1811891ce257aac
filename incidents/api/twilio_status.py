"""Twilio's delivery status callbacks: `POST /api/v1/notify/twilio/status?notification=<id>`.

Twilio cannot send our API token, so the guard lets this path through without it, and
the handler checks `X-Twilio-Signature` instead: HMAC-SHA1, keyed with the Twilio auth
token, over the URL Twilio called and the sorted form fields. That URL is rebuilt from
`public_url`, else `notify.public_url` (the address the channels gave Twilio), not from
the request as it arrived: behind a proxy the two differ (incidents.api.twilio_signature).

Answers: 200 with what was done (stored, requeued, failed or ignored: a duplicate or
stale callback is a success for Twilio, there is nothing to retry); 403 for a missing or
wrong signature; 404 for an unknown notification, or when Twilio is not configured; 422
for a form without the status or SID; 503 while the notification is being sent and its
new SID is not recorded yet. The operation is not in the OpenAPI document: it is
Twilio's to call, not a client's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict

from incidents.api.responses import JsonResponse
from incidents.exceptions import ValidationFailed
from incidents.notify import delivery_status
from incidents.notify.channels.twilio_client import STATUS_CALLBACK_PATH

from .deps import service
from .twilio_signature import SIGNATURE_HEADER, verified_form

router = APIRouter(tags=["notifications"])

__all__ = ["SIGNATURE_HEADER", "router"]


@router.post(STATUS_CALLBACK_PATH, include_in_schema=False)
async def twilio_status(request: Request) -> JsonResponse:
    """Apply one Twilio status callback to the notification it names."""
    state = service(request)
    settings = state.settings
    form = await verified_form(request, settings, built_by_us=True)
    notification = _notification_id(request.query_params.get("notification"))
    report = _report(form)
    applied = await run_in_threadpool(
        delivery_status.apply,
        state.sessions,
        notification,
        report,
        max_attempts=settings.notify.max_attempts,
    )
    return JsonResponse(
        {
            "notification": notification,
            "result": applied.action,
            "status": applied.status,
            "provider_status": applied.provider_status,
            "reason": applied.reason,
        }
    )


def _notification_id(value: str | None) -> int:
    if not value:
        raise ValidationFailed(
            "notification: missing; the status callback URL names the notification",
            field="notification",
        )
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise ValidationFailed(
            f"notification: {value[:40]!r} is not a notification id", field="notification"
        )
    return int(value)


def _report(form: ImmutableMultiDict[str, str]) -> delivery_status.Report:
    kind: delivery_status.Kind = "call" if "CallSid" in form or "CallStatus" in form else "message"
    prefix = "Call" if kind == "call" else "Message"
    status, sid = _field(form, f"{prefix}Status"), _field(form, f"{prefix}Sid")
    return delivery_status.Report(
        kind=kind,
        sid=sid,
        status=status.strip().lower(),
        error_code=_code(form, "ErrorCode"),
        sip_response_code=_code(form, "SipResponseCode"),
    )


def _field(form: ImmutableMultiDict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise ValidationFailed(
            f"{name}: missing; a Twilio status callback always carries it", field=name
        )
    return value


def _code(form: ImmutableMultiDict[str, str], name: str) -> int | None:
    value = form.get(name, "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise ValidationFailed(f"{name}: {value[:40]!r} is not a number", field=name)
    return int(value)
