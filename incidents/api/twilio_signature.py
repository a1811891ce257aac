"""Twilio's signed requests: the form, once `X-Twilio-Signature` says Twilio sent it.

Twilio signs the URL it called (HMAC-SHA1 keyed with the auth token, over the URL and the
sorted form fields). Behind a proxy that URL is not the one the request arrives on, so
it is rebuilt by one rule, for every Twilio endpoint:

- `public_url` (env `INCIDENTS_PUBLIC_URL`) when set: the channels also give Twilio their
  status callback and key press URLs under it;
- otherwise, for the URLs the service gave Twilio itself (status callbacks, the voice
  menu's key presses): `notify.public_url`, which those URLs were built from;
- otherwise (the SMS webhook, typed into Twilio's console): the URL the request
  arrived on.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request
from starlette.datastructures import ImmutableMultiDict

from incidents.config import Settings
from incidents.exceptions import BadRequest, Forbidden, NotFound

SIGNATURE_HEADER = "X-Twilio-Signature"


def signed_url(settings: Settings, request: Request, *, built_by_us: bool) -> str:
    """The URL Twilio signed for this request (see the module's rule)."""
    base = settings.public_url or (settings.notify.public_url if built_by_us else "")
    if not base:
        return str(request.url)
    url = base.rstrip("/") + request.url.path
    query: bytes = request.scope.get("query_string", b"")
    return f"{url}?{query.decode('latin-1')}" if query else url


async def verified_form(
    request: Request, settings: Settings, *, built_by_us: bool
) -> ImmutableMultiDict[str, str]:
    """The posted form; 403 unless Twilio signed it, 404 when Twilio is not configured."""
    from twilio.request_validator import RequestValidator

    token = settings.twilio_auth_token
    if not token:
        raise NotFound(
            "Twilio webhooks are off: twilio_auth_token is not set, so no signature can be checked"
        )
    body = await request.body()
    try:
        form = ImmutableMultiDict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 form data", field="body") from None
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise Forbidden(
            f"missing {SIGNATURE_HEADER} header: only Twilio's signed requests are accepted",
            field=SIGNATURE_HEADER,
        )
    url = signed_url(settings, request, built_by_us=built_by_us)
    if not RequestValidator(token).validate(url, form, signature):
        raise Forbidden(
            f"{SIGNATURE_HEADER} does not match this request signed with the Twilio auth "
            f"token for {url}; check twilio_auth_token and public_url",
            field=SIGNATURE_HEADER,
        )
    return form
