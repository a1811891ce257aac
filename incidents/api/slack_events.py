"""Slack's Events API: `POST /api/v1/integrations/slack/events`.

Slack cannot send our API token, so the guard lets this path through without it and the
handler checks Slack's v0 signature (HMAC-SHA256 with `slack_signing_secret` over
`v0:<timestamp>:<body>`), refusing requests more than five minutes old (replays).

Answers the URL verification challenge, and records `message` events posted in a
war-room channel as notes on its incident (see incidents.warroom.notes). Bots' messages,
edits and joins are ignored; an event Slack delivers again (`X-Slack-Retry-Num`) is
recorded once. Not in the OpenAPI document: it is Slack's to call, not a client's.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from slack_sdk.signature import SignatureVerifier
from starlette.concurrency import run_in_threadpool

from incidents.api.responses import JsonResponse
from incidents.db import utcnow
from incidents.exceptions import BadRequest, Forbidden, NotFound
from incidents.warroom.notes import record_message
from incidents.warroom.settings import SLACK_EVENTS_PATH

from .deps import service

MAX_AGE_SECONDS = 300

router = APIRouter(tags=["integrations"])


@router.post(SLACK_EVENTS_PATH, include_in_schema=False)
async def slack_events(request: Request) -> JsonResponse:
    """One Events API request: a challenge, or an event to record."""
    state = service(request)
    secret = state.settings.slack_signing_secret
    if not secret:
        raise NotFound("Slack events are off: slack_signing_secret is not set")
    body = await request.body()
    try:
        body.decode("utf-8")  # the signature is computed over the decoded text
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 JSON", field="body") from None
    _verify(secret, body, request.headers)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON", field="body") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body is not a JSON object", field="body")
    kind = payload.get("type")
    if kind == "url_verification":
        return JsonResponse({"challenge": str(payload.get("challenge") or "")})
    event = payload.get("event")
    if kind != "event_callback" or not isinstance(event, dict) or event.get("type") != "message":
        return JsonResponse({"result": "ignored: not a message event"})
    event_id = str(payload.get("event_id") or "")
    result, tasks = await run_in_threadpool(
        record_message, state.sessions, state.settings, event_id, event, utcnow()
    )
    state.dispatcher.hand_on(tasks)
    return JsonResponse({"result": result})


def _verify(secret: str, body: bytes, headers: Any) -> None:
    timestamp = headers.get("X-Slack-Request-Timestamp") or ""
    signature = headers.get("X-Slack-Signature") or ""
    if not timestamp or not signature:
        raise Forbidden(
            "missing X-Slack-Request-Timestamp or X-Slack-Signature: only Slack's signed "
            "requests are accepted",
            field="X-Slack-Signature",
        )
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        raise Forbidden(
            "X-Slack-Request-Timestamp is not a number", field="X-Slack-Request-Timestamp"
        ) from None
    if age > MAX_AGE_SECONDS:
        raise Forbidden(
            "the request is more than 5 minutes old (a replay?); check the server's clock",
            field="X-Slack-Request-Timestamp",
        )
    if not SignatureVerifier(secret).is_valid(body, timestamp, signature):
        raise Forbidden(
            "X-Slack-Signature does not match; check slack_signing_secret",
            field="X-Slack-Signature",
        )
