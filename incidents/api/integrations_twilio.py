"""Replies to our Twilio number, and key presses on a paging call.

`POST /api/v1/integrations/twilio/sms`: Twilio's messaging webhook. The sender (`From`)
must be a user's phone; the body is one of the forms in incidents.acting.sms_reply
(acknowledge or close an incident, approve or reject a playbook step: `12y`,
`approve 4821`). The answer is TwiML: a message saying what was done or what is
understood; nothing for an unknown sender, for STOP/START (Twilio answers those itself),
and past three "not understood" replies to one number in ten minutes.

`POST /api/v1/integrations/twilio/voice?incident=<id>`: the voice menu's `<Gather>`. The
callee (`To`, else `Called`: the call went to the user) must be a user's phone; `Digits`
1 acknowledges, 2 resolves, 3 escalates now. The answer is TwiML that says what was done.

Both check `X-Twilio-Signature` (incidents.api.twilio_signature) instead of our token,
and, like the status callback, are Twilio's to call: not in the OpenAPI document.
"""

from __future__ import annotations

import logging
from typing import cast

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from incidents.acting import TWILIO_SMS_PATH, TWILIO_VOICE_PATH
from incidents.acting.perform import Done, Verb, perform
from incidents.acting.sms_handler import Outcome, ReplyLimit, handle
from incidents.db import session_scope, utcnow
from incidents.notify.channels.voice import PROMPT
from incidents.oncall.lookup import user_by_phone
from incidents.pipeline.actions import Actor
from incidents.pipeline.runner import route_events

from .deps import ServiceState, service
from .twilio_signature import signed_url, verified_form

log = logging.getLogger(__name__)
router = APIRouter(tags=["integrations"])

XML = "application/xml"
DIGITS: dict[str, Verb] = {"1": "acknowledge", "2": "resolve", "3": "escalate"}


def _twiml(document: MessagingResponse | VoiceResponse) -> Response:
    return Response(str(document.to_xml()), media_type=XML)


def _limit(request: Request) -> ReplyLimit:
    limit = getattr(request.app.state, "sms_not_understood", None)
    if limit is None:
        limit = request.app.state.sms_not_understood = ReplyLimit()
    return cast(ReplyLimit, limit)


@router.post(TWILIO_SMS_PATH, include_in_schema=False)
async def twilio_sms(request: Request) -> Response:
    """Act on one SMS reply and answer it with TwiML."""
    state = service(request)
    form = await verified_form(request, state.settings, built_by_us=False)
    sender = form.get("From", "").strip()
    reply = MessagingResponse()
    if not sender:
        log.warning("sms: a message without a sender (%s) was ignored", form.get("MessageSid"))
        return _twiml(reply)
    outcome = await run_in_threadpool(_sms, state, sender, form.get("Body", ""))
    if outcome.reply is None:
        return _twiml(reply)
    if outcome.not_understood and not _limit(request).allow(sender):
        log.info("sms: not answering %s again: too many replies not understood", sender)
        return _twiml(reply)
    reply.message(outcome.reply)
    return _twiml(reply)


def _sms(state: ServiceState, sender: str, body: str) -> Outcome:
    now = utcnow()
    with session_scope(state.sessions) as session:
        outcome = handle(session, sender, body, now)
        tasks = route_events(session, state.settings, outcome.events, now)
    state.dispatcher.hand_on(tasks + outcome.tasks)
    return outcome


@router.post(TWILIO_VOICE_PATH, include_in_schema=False)
async def twilio_voice(request: Request) -> Response:
    """Act on the key pressed on a paging call and say what was done."""
    state = service(request)
    form = await verified_form(request, state.settings, built_by_us=True)
    answer = VoiceResponse()
    raw = request.query_params.get("incident", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        log.warning("voice: a key press for no incident (%r) was ignored", raw[:40])
        answer.say("This call is not about a known incident. Goodbye.")
        return _twiml(answer)
    callee = (form.get("To") or form.get("Called") or "").strip()
    verb = DIGITS.get(form.get("Digits", "").strip())
    if verb is None:
        gather = answer.gather(
            num_digits=1,
            action=signed_url(state.settings, request, built_by_us=True),
            method="POST",
            timeout=5,
        )
        gather.say(f"That key does nothing. {PROMPT}")
        answer.say("No key was pressed. Goodbye.")
        return _twiml(answer)
    done = await run_in_threadpool(_voice, state, callee, int(raw), verb)
    answer.say(f"{done.text}. Goodbye." if done.ok else f"{done.text}. Nothing was done.")
    return _twiml(answer)


def _voice(state: ServiceState, callee: str, incident_id: int, verb: Verb) -> Done:
    now = utcnow()
    with session_scope(state.sessions) as session:
        user = user_by_phone(session, callee) if callee else None
        if user is None:
            log.warning("voice: a key press on a call to %r, no user's phone, was refused", callee)
            return Done(False, "This phone is not a known user's")
        done = perform(session, incident_id, verb, Actor(user.name, "voice"), now)
        tasks = route_events(session, state.settings, done.events, now)
    state.dispatcher.hand_on(tasks)
    return done
