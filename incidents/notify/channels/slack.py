"""The Slack channel: one message per incident and channel, kept current, with a thread.

The first send about an incident to a channel posts a Block Kit message; its channel id
and `ts` come back in `SendResult.thread`, and every later send (symptoms joined, a
re-root, severity raised, resolved, reopened) edits that message in place and adds a
thread reply, so a busy incident never floods the channel with top-level posts.

A playbook approval request is a thread reply with Approve and Reject buttons (the
interactivity endpoint takes the presses); it leaves the incident's message as it is, and
before the incident has a message it is posted on its own, without becoming the thread.

One send is one attempt: the WebClient is built without retry handlers, so a 429 reaches
us and goes back to the notify worker with its `Retry-After`, and the worker decides.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jinja2 import Template, TemplateError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse

from incidents.notify import templates
from incidents.notify.approval_note import APPROVAL_EVENT
from incidents.notify.approval_note import read as read_ask
from incidents.notify.base import Notification, SendResult, register
from incidents.notify.channels import slack_blocks as render
from incidents.notify.channels import slack_find

log = logging.getLogger(__name__)

RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
UNREACHABLE = frozenset({"channel_not_found", "not_in_channel", "is_archived"})
BAD_TOKEN = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
# Slack's own word that the failure is on its side and a later attempt may succeed.
TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# The message we keep editing is gone (deleted, or not ours to edit): post a fresh one.
MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
# Events that the whole channel should see again, not only those following the thread.
BROADCAST_EVENTS = frozenset({"severity_raised", "reopened", "reminder"})


class SlackSettings(BaseModel):
    """How to reach Slack and how to word the messages."""

    # A misspelt key would otherwise leave a template or the token silently at its default.
    model_config = ConfigDict(extra="forbid")

    bot_token: str = ""
    # Verifies the button clicks Slack posts back (used by the interactivity endpoint).
    signing_secret: str = ""
    api_url: str = "https://slack.com/api/"
    timeout_seconds: float = Field(default=10, gt=0)
    # Jinja2 templates (sandboxed) over the notification's fields; None keeps the default.
    title_template: str | None = None
    reply_template: str | None = None

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value


def compile_template(source: str | None, what: str) -> Template | None:
    """A sandboxed template, tried once on the shared sample; raises ValueError if broken."""
    if source is None:
        return None
    return templates.compile_template(source, f"slack.{what}", trial=_context(templates.SAMPLE))


def classify(exc: Exception, method: str) -> SendResult:
    """Turn what a Slack call raised into a failed SendResult: retry or not, and why."""
    if isinstance(exc, SlackApiError):
        return _classify_api_error(exc.response, method)
    if isinstance(exc, OSError | http.client.HTTPException):
        # Refused, reset, timed out: Slack may be fine a moment later, and may have
        # taken the request before the answer was lost.
        return SendResult(
            ok=False, retryable=True, in_doubt=True, error=f"slack {method}: network error: {exc}"
        )
    if isinstance(exc, SlackClientError):
        return SendResult(ok=False, error=f"slack {method}: client error: {exc}")
    raise exc


def _classify_api_error(response: SlackResponse, method: str) -> SendResult:
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    code = str(data.get("error") or f"http_{status}")
    where = f"slack {method}"
    if status == 429 or code in RATE_LIMITED:
        retry_after = _retry_after(response.headers)
        wait = f"; retry after {retry_after:g}s" if retry_after is not None else ""
        return SendResult(
            ok=False,
            retryable=True,
            retry_after=retry_after,
            limited=method,
            error=f"{where}: rate limited ({code}){wait}",
        )
    if status >= 500 or code in TRANSIENT:
        # A 5xx body is often an HTML page; the status says more than the parse failure.
        detail = code if code in TRANSIENT else f"HTTP {status}"
        # A gateway's 5xx may come after Slack acted on the request.
        return SendResult(
            ok=False,
            retryable=True,
            in_doubt=True,
            error=f"{where}: Slack server error ({detail})",
        )
    if code in UNREACHABLE:
        return SendResult(
            ok=False,
            target_unreachable=True,
            error=f"{where}: cannot post to the channel ({code}); invite the bot or fix the target",
        )
    if code in BAD_TOKEN:
        return SendResult(
            ok=False, error=f"{where}: the bot token is wrong or revoked ({code}); check bot_token"
        )
    if code == "missing_scope":
        needed = data.get("needed", "")
        return SendResult(
            ok=False, error=f"{where}: the bot token lacks a scope ({code} {needed})".rstrip()
        )
    return SendResult(ok=False, error=f"{where}: Slack refused the message ({code})")


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                seconds = float(raw)
            except (TypeError, ValueError):
                return None
            return max(seconds, 0.0)
    return None


def _context(n: Notification) -> dict[str, Any]:
    context = dataclasses.asdict(n)
    context["summary"] = render.event_summary(n)
    return context


class SlackNotifier:
    """Posts, edits and threads incident messages through Slack's Web API."""

    name = "slack"

    def __init__(self, settings: SlackSettings, client: WebClient | None = None) -> None:
        """Build from settings; templates are compiled (and a broken one raises) here."""
        self.settings = settings
        self.title_template = compile_template(settings.title_template, "title_template")
        self.reply_template = compile_template(settings.reply_template, "reply_template")
        self.client = client or WebClient(
            token=settings.bot_token or None,
            base_url=settings.api_url,
            # The SDK types it as int; a float works with urllib and allows sub-second ones.
            timeout=settings.timeout_seconds,  # type: ignore[arg-type]
            # Retries belong to the notify worker: it must see every 429 and 5xx.
            retry_handlers=[],
        )
        self._channel_ids = slack_find.ChannelIds(self.client)

    def send(self, notification: Notification) -> SendResult:
        """Post the incident's message, or edit it and reply in its thread."""
        if not self.settings.bot_token:
            return SendResult(ok=False, error="slack: bot_token is not set; cannot send")
        n = notification
        if n.event == APPROVAL_EVENT:
            return self._ask(n)
        if n.thread.get("ts"):
            return self._update(n)
        return self._post(n)

    def attempt_key(self, notification: Notification) -> str | None:
        """Nothing beyond the metadata every post carries."""
        return None

    def find(
        self, notification: Notification, since: datetime, key: str | None
    ) -> SendResult | None:
        """The earlier attempt's post, found by its metadata; None if Slack has none.

        For an incident that has its message, the attempt was an edit and a thread reply:
        the edit may be made again, so only the reply is looked for. A notification whose
        event posts no reply is simply made again.
        """
        n = notification
        thread_ts = n.thread.get("ts")
        if thread_ts and n.event == "opened":
            return None
        channel = n.thread.get("channel") or self._channel_ids.resolve(n.target)
        ts = slack_find.find_post(self.client, channel, since, n.delivery_id, thread_ts)
        if ts is None:
            return None
        thread = {"channel": channel, "ts": thread_ts or ts}
        if n.event == APPROVAL_EVENT:
            thread = dict(n.thread)  # the request never becomes the incident's thread
        return SendResult(ok=True, provider_id=ts, thread=thread)

    def _post(self, n: Notification) -> SendResult:
        title = self._title(n)
        try:
            response = self.client.chat_postMessage(
                channel=n.target,
                text=render.fallback_text(n, title),
                blocks=render.message_blocks(n, title),
                attachments=render.attachments(n),
                unfurl_links=False,
                metadata=slack_find.metadata(n.delivery_id, n.incident_id),
            )
        except Exception as exc:
            return classify(exc, "chat.postMessage")
        ts = str(response.get("ts", ""))
        channel = str(response.get("channel") or n.target)
        return SendResult(ok=True, provider_id=ts, thread={"channel": channel, "ts": ts})

    def _ask(self, n: Notification) -> SendResult:
        """Post an approval request in the incident's thread (or alone, before it has one)."""
        ask = read_ask(n.details)
        if ask is None:
            return SendResult(ok=False, error="slack: the approval notification names no run")
        try:
            response = self.client.chat_postMessage(
                channel=n.thread.get("channel") or n.target,
                text=render.approval_text(n, ask),
                blocks=render.approval_blocks(n, ask),
                unfurl_links=False,
                metadata=slack_find.metadata(n.delivery_id, n.incident_id),
                thread_ts=n.thread.get("ts") or None,
            )
        except Exception as exc:
            return classify(exc, "chat.postMessage (approval)")
        return SendResult(ok=True, provider_id=str(response.get("ts", "")), thread=dict(n.thread))

    def _update(self, n: Notification) -> SendResult:
        channel = n.thread.get("channel") or n.target
        ts = n.thread["ts"]
        title = self._title(n)
        # Edit first, reply second: a retry after a failed reply then repeats only the
        # edit, which is harmless, and never posts the same reply twice.
        try:
            response = self.client.chat_update(
                channel=channel,
                ts=ts,
                text=render.fallback_text(n, title),
                blocks=render.message_blocks(n, title),
                attachments=render.attachments(n),
            )
        except SlackApiError as exc:
            code = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            if code in MESSAGE_GONE:
                log.warning(
                    "slack message %s in %s is gone (%s); posting a new one", ts, channel, code
                )
                return self._post(dataclasses.replace(n, target=channel))
            return classify(exc, "chat.update")
        except Exception as exc:
            return classify(exc, "chat.update")
        thread = {"channel": str(response.get("channel") or channel), "ts": ts}
        if n.event != "opened":
            failed = self._reply(n, thread)
            if failed is not None:
                return failed
        return SendResult(ok=True, provider_id=str(response.get("ts") or ts), thread=thread)

    def _reply(self, n: Notification, thread: dict[str, str]) -> SendResult | None:
        """Post the thread reply; None when it went, the failure otherwise."""
        try:
            self.client.chat_postMessage(
                channel=thread["channel"],
                thread_ts=thread["ts"],
                text=self._reply_text(n),
                reply_broadcast=n.event in BROADCAST_EVENTS,
                unfurl_links=False,
                metadata=slack_find.metadata(n.delivery_id, n.incident_id),
            )
        except Exception as exc:
            return classify(exc, "chat.postMessage (thread reply)")
        return None

    def _title(self, n: Notification) -> str:
        rendered = self._render(self.title_template, n, "title_template")
        if rendered is None or not rendered.strip():
            return n.title
        return rendered.strip()

    def _reply_text(self, n: Notification) -> str:
        rendered = self._render(self.reply_template, n, "reply_template")
        if rendered is None or not rendered.strip():
            return render.reply_text(n)
        return render.truncate(rendered, render.SECTION_LIMIT)

    def _render(self, template: Template | None, n: Notification, what: str) -> str | None:
        if template is None:
            return None
        try:
            return template.render(_context(n))
        except TemplateError as exc:
            # A custom wording that breaks on one incident must not cost the page itself.
            log.warning("slack %s failed for incident %s: %s", what, n.incident_id, exc)
            return None


def slack_settings(settings: Any) -> SlackSettings:
    """SlackSettings from itself, a mapping, another model, or a parent with `.slack`."""
    if isinstance(settings, SlackSettings):
        return settings
    if isinstance(settings, Mapping):
        return SlackSettings.model_validate(dict(settings))
    section = getattr(settings, "slack", None)
    if section is not None:
        return slack_settings(section)
    if isinstance(settings, BaseModel):
        known = settings.model_dump(include=set(SlackSettings.model_fields))
        return SlackSettings.model_validate(known)
    raise TypeError(f"cannot read Slack settings from {type(settings).__name__}")


@register("slack")
def build_slack(settings: Any) -> SlackNotifier:
    """The Slack channel, built from its settings (or settings holding a `slack` section)."""
    return SlackNotifier(slack_settings(settings))
