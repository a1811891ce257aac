"""The Acknowledge and Resolve buttons of an incident's Slack message.

`POST /api/v1/integrations/slack/actions` is the Slack app's interactivity request URL:
a form whose `payload` field is the JSON of a `block_actions` interaction. It carries no
token of ours; Slack signs it (`X-Slack-Signature`, `v0` HMAC-SHA256 of the timestamp and
the raw body, keyed with `slack_signing_secret`), and a request whose
`X-Slack-Request-Timestamp` is more than five minutes off is refused as a replay (403).

The clicking Slack member must be a user (`slack_user_id` in the users document); the
action runs as the API's does, so the incident's Slack message is edited by the notify
worker like after any action. Slack wants the 200 within three seconds: the request
waits at most ANSWER_WITHIN_SECONDS for the action, and if it is held up (a busy
database, the incident locked by another action) answers that it is being done, lets it
finish after the answer, and tells the person the outcome through `response_url`. The
person is answered with an ephemeral text through the interaction's `response_url`
(after the 200), which says what was done, why not (already acknowledged), or that they
are not a known user. Like Twilio's callbacks, the operation is not in the OpenAPI
document.

The same endpoint takes the Approve and Reject buttons of a playbook's approval request
(their value is the run id): the decision is recorded with the user's name (via slack),
an approved run is handed to a playbook worker after commit, and the request's message
then says who decided instead of offering the buttons again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, BackgroundTasks, Request
from slack_sdk.signature import SignatureVerifier
from starlette.concurrency import run_in_threadpool

from incidents.acting import SLACK_ACTIONS_PATH, approvals
from incidents.acting.perform import Done, Verb, perform
from incidents.api.responses import JsonResponse
from incidents.db import session_scope, utcnow
from incidents.exceptions import BadRequest, Forbidden, IncidentsError, NotFound
from incidents.notify.channels.slack_blocks import APPROVE_ACTION, REJECT_ACTION, decided_blocks
from incidents.oncall.lookup import user_by_slack_id
from incidents.pipeline.actions import Actor
from incidents.pipeline.runner import route_events

from .deps import ServiceState, service

log = logging.getLogger(__name__)
router = APIRouter(tags=["integrations"])

MAX_AGE_SECONDS = 5 * 60
# Slack shows an error when the answer takes over 3 s: a slower action answers first.
ANSWER_WITHIN_SECONDS = 2.0
BUTTONS: dict[str, Verb] = {"acknowledge": "acknowledge", "resolve": "resolve"}
# The approval request's buttons: approve or not.
DECISIONS = {APPROVE_ACTION: True, REJECT_ACTION: False}
NOT_A_USER = (
    "You are not a known user of the incident service, so nothing was done: ask for your "
    "Slack member id to be added to your user."
)


@dataclass(frozen=True)
class Click:
    """One button press, as far as it matters here."""

    slack_user: str
    # A button of BUTTONS or DECISIONS.
    action: str
    # The incident id (BUTTONS) or the playbook run id (DECISIONS).
    target: int
    response_url: str | None


@router.post(SLACK_ACTIONS_PATH, include_in_schema=False)
async def slack_actions(request: Request, background: BackgroundTasks) -> JsonResponse:
    """Act on an Acknowledge, Resolve, Approve or Reject button press."""
    state = service(request)
    secret = state.settings.slack_signing_secret
    if not secret:
        raise NotFound(
            "Slack interactivity is off: slack_signing_secret is not set, so no signature "
            "can be checked"
        )
    body = await request.body()
    _verify(secret, body, request.headers)
    click = _click(body)
    work = asyncio.ensure_future(run_in_threadpool(_act, state, click))
    try:
        done = await asyncio.wait_for(asyncio.shield(work), ANSWER_WITHIN_SECONDS)
    except TimeoutError:
        # Answer Slack in time; the action goes on, and its outcome follows.
        log.warning(
            "slack: %s on %s is slow; answered before it is done", click.action, click.target
        )
        background.add_task(_finish_late, work, click)
        return JsonResponse(_ephemeral(f"Working on it: {click.action} #{click.target}..."))
    for message in _messages(click, done):
        background.add_task(_respond, str(click.response_url), message)
    return JsonResponse(_ephemeral(done.text))


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def _messages(click: Click, done: Answer) -> list[dict[str, Any]]:
    """What goes to the interaction's response_url once the action is done."""
    if not click.response_url:
        return []
    said = [_ephemeral(done.text)]
    if click.action in DECISIONS and done.ok:
        # The request is answered: its message says so, and nobody presses again.
        text = f"{done.text} (by {done.by})"
        said.append({"replace_original": True, "text": text, "blocks": decided_blocks(text)})
    return said


async def _finish_late(work: asyncio.Future[Answer], click: Click) -> None:
    """After the answer: wait for the slow action and tell the person how it went."""
    try:
        done = await work
    except IncidentsError as exc:
        done = Answer(False, exc.message)
    except Exception:
        log.exception("slack: %s on %s failed after the answer", click.action, click.target)
        done = Answer(False, f"Could not {click.action} #{click.target}: an internal error")
    for message in _messages(click, done):
        await run_in_threadpool(_respond, str(click.response_url), message)


def _verify(secret: str, body: bytes, headers: Any) -> None:
    stamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not stamp or not signature:
        raise Forbidden(
            "missing X-Slack-Request-Timestamp or X-Slack-Signature: only Slack's signed "
            "requests are accepted",
            field="X-Slack-Signature",
        )
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise Forbidden("X-Slack-Request-Timestamp is not a Unix time", field="timestamp")
    if abs(time.time() - int(stamp)) > MAX_AGE_SECONDS:
        raise Forbidden(
            "X-Slack-Request-Timestamp is more than five minutes off: refused as a replay",
            field="X-Slack-Request-Timestamp",
        )
    if not SignatureVerifier(secret).is_valid(body, stamp, signature):
        raise Forbidden(
            "X-Slack-Signature does not match this body signed with the Slack signing "
            "secret; check slack_signing_secret",
            field="X-Slack-Signature",
        )


def _click(body: bytes) -> Click:
    try:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        payload = orjson.loads(form.get("payload", ""))
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        raise BadRequest("payload: not the JSON of a Slack interaction", field="payload") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise BadRequest("payload: only block_actions interactions are handled", field="type")
    user = payload.get("user")
    found = payload.get("actions")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise BadRequest("payload: user.id is missing", field="user")
    if not isinstance(found, list) or not found or not isinstance(found[0], dict):
        raise BadRequest("payload: actions is empty", field="actions")
    action = found[0]
    name = str(action.get("action_id"))
    value = action.get("value")
    if name not in BUTTONS and name not in DECISIONS:
        known = ", ".join([*BUTTONS, *DECISIONS])
        raise BadRequest(f"payload: the action is not one of {known}", field="action_id")
    if not isinstance(value, str) or not (value.isascii() and value.isdigit() and len(value) < 19):
        what = "an incident id" if name in BUTTONS else "a playbook run id"
        raise BadRequest(f"payload: the button's value is not {what}", field="value")
    url = payload.get("response_url")
    return Click(user["id"], name, int(value), url if isinstance(url, str) and url else None)


@dataclass
class Answer:
    """What a press did: a line for the person, and who they are."""

    ok: bool
    text: str
    by: str = ""


def _act(state: ServiceState, click: Click) -> Answer:
    now = utcnow()
    with session_scope(state.sessions) as session:
        user = user_by_slack_id(session, click.slack_user)
        if user is None:
            log.warning(
                "slack: %s on %s by Slack member %s, no known user, was refused",
                click.action,
                click.target,
                click.slack_user,
            )
            return Answer(False, NOT_A_USER)
        if click.action in DECISIONS:
            decided = approvals.decide(
                session,
                click.target,
                approve=DECISIONS[click.action],
                actor=user.name,
                via="slack",
                now=now,
            )
            done, tasks = Done(decided.ok, decided.text), decided.tasks
        else:
            verb = BUTTONS[click.action]
            done = perform(session, click.target, verb, Actor(user.name, "slack"), now)
            tasks = route_events(session, state.settings, done.events, now)
    state.dispatcher.hand_on(tasks)
    return Answer(done.ok, done.text, user.name)


def _respond(url: str, answer: dict[str, Any]) -> None:
    """Show the person the answer (Slack ignores the HTTP response of a button press)."""
    from slack_sdk.webhook import WebhookClient

    try:
        WebhookClient(url, timeout=5).send_dict(answer)
    except Exception:  # the action is done; only the note to the person is lost
        log.warning("slack: could not answer through response_url", exc_info=True)
