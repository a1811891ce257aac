"""What Twilio posts to a status callback URL, and how it signs it (for FakeTwilio)."""

from __future__ import annotations

import uuid
from email.utils import formatdate

import httpx
from twilio.request_validator import RequestValidator


def post_signed(
    auth_token: str, url: str, form: dict[str, str], *, signature: str | None = None
) -> httpx.Response:
    """POST a form as Twilio's webhooks do, signed with the auth token ("" sends none)."""
    headers = {
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
    }
    if signature is None:
        signature = RequestValidator(auth_token).compute_signature(url, form)
    if signature:
        headers["X-Twilio-Signature"] = signature
    return httpx.post(url, data=form, headers=headers, timeout=10)


def status_form(
    account_sid: str,
    sid: str,
    kind: str,
    created: dict[str, str],
    status: str,
    *,
    sequence: int,
) -> dict[str, str]:
    """The form of a status callback for a message or call created with `created`."""
    to, sender = created["To"], created["From"]
    common = {"AccountSid": account_sid, "ApiVersion": "2010-04-01", "To": to, "From": sender}
    if kind == "Messages":
        return {
            **common,
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
        }
    form = {
        **common,
        "CallSid": sid,
        "CallStatus": status,
        "Called": to,
        "Caller": sender,
        "Direction": "outbound-api",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": str(sequence),
        "Timestamp": formatdate(usegmt=True),
    }
    if status == "completed":
        form |= {"CallDuration": "17", "Duration": "1"}
    return form
