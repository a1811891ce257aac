"""The `warroom` channel: a dedicated Slack channel for a P0 incident.

One send makes the war room step by step, and keeps how far it got in
`notification_threads` (incident, "warroom", "p0") after each step, so a retry after a
partial failure picks up where it stopped: create the channel (`inc-<id>-<slug>`; a
name taken by someone else gets a suffix, one taken by our bot is an earlier attempt's
and is reused), invite the paged on-call and the root-cause team's on-call, post the
incident message (with its buttons) unless an earlier attempt's post is found by its
metadata, pin it, and link the channel in the incident's main Slack thread. An
`archive` notification archives the channel.

Scopes: channels:manage (create, invite, archive), channels:read (find by name),
channels:history (find an earlier post), chat:write, pins:write.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import utcnow
from incidents.notify.base import Notification, SendResult, register
from incidents.notify.channels import slack_blocks as render
from incidents.notify.channels import slack_find
from incidents.notify.channels.slack import SlackSettings, classify
from incidents.warroom import people

log = logging.getLogger(__name__)

NAME_LIMIT = 80
# Errors that mean the step is already done, or cannot be done for one person only.
INVITE_SKIPPED = frozenset(
    {"already_in_channel", "cant_invite_self", "user_not_found", "user_is_restricted"}
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Seconds to wait for the incident's main Slack message before linking the war room.
LINK_WAIT_SECONDS = 5.0


class WarRoomChannelSettings(SlackSettings):
    """Slack's settings and the war room's name prefix."""

    model_config = ConfigDict(extra="forbid")

    channel_prefix: str = "inc"


def channel_name(prefix: str, incident_id: int, title: str, suffix: str = "") -> str:
    """`<prefix>-<id>-<slug>`: lowercase letters, digits, `-` and `_`, at most 80."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_]+", "-", ascii_title.lower()).strip("-_")
    base = f"{prefix}-{incident_id}" + (f"-{slug}" if slug else "")
    return base[: NAME_LIMIT - len(suffix)].rstrip("-_") + suffix


class _Failed(Exception):
    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result


class WarRoomNotifier:
    """Creates, fills, links and archives war-room channels."""

    name = "warroom"

    def __init__(
        self,
        settings: WarRoomChannelSettings,
        client: WebClient | None = None,
        factory: sessionmaker[Session] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client or WebClient(
            token=settings.bot_token or None,
            base_url=settings.api_url,
            timeout=settings.timeout_seconds,  # type: ignore[arg-type]
            retry_handlers=[],
        )
        self._factory = factory
        self._bot_user: str | None = None

    def bind(self, factory: sessionmaker[Session]) -> None:
        """The database the war room reads the on-call from and keeps its progress in."""
        self._factory = factory

    def send(self, notification: Notification) -> SendResult:
        """Make (or archive) the incident's war room; every step safe to repeat."""
        if not self.settings.bot_token:
            return SendResult(ok=False, error="warroom: slack bot_token is not set")
        if self._factory is None:
            return SendResult(ok=False, error="warroom: no database bound to the channel")
        try:
            if notification.event == "archive":
                return self._archive(self._factory, notification)
            return self._open(self._factory, notification)
        except _Failed as failed:
            return failed.result

    def attempt_key(self, notification: Notification) -> str | None:
        """Nothing: the progress kept per step says what is done."""
        return None

    def find(
        self, notification: Notification, since: datetime, key: str | None
    ) -> SendResult | None:
        """Done already if every step is; else note a channel an earlier attempt created
        (found by name, made by our bot) so the send does not create a second one."""
        if self._factory is None or notification.event == "archive":
            return None
        done = people.progress(self._factory, notification.incident_id)
        if done.get("linked"):
            return SendResult(ok=True, provider_id=done.get("channel"), thread=done)
        if not done.get("channel"):
            name = self._name(notification)
            existing = self._ours(name)
            if existing is not None:
                done |= {"channel": existing, "name": name}
                people.save_progress(self._factory, notification.incident_id, done, utcnow())
        return None

    # The steps ---------------------------------------------------------------------

    def _open(self, factory: sessionmaker[Session], n: Notification) -> SendResult:
        incident = n.incident_id
        done = people.progress(factory, incident)

        def keep(**values: str) -> None:
            done.update(values)
            people.save_progress(factory, incident, done, utcnow())

        if not done.get("channel"):
            channel, name = self._create(n)
            keep(channel=channel, name=name)
        channel = done["channel"]
        self._invite(channel, people.invitees(factory, incident, utcnow()))
        if not done.get("ts"):
            ts = self._find_post(channel, n.delivery_id, None)
            keep(ts=ts or self._post(channel, n))
        if not done.get("pinned"):
            self._call(
                "pins.add",
                self.client.pins_add,
                {"already_pinned"},
                channel=channel,
                timestamp=done["ts"],
            )
            keep(pinned="true")
        if not done.get("linked"):
            self._link(factory, n, done)
            keep(linked="true")
        return SendResult(ok=True, provider_id=channel, thread=dict(done))

    def _archive(self, factory: sessionmaker[Session], n: Notification) -> SendResult:
        done = people.progress(factory, n.incident_id)
        channel = done.get("channel")
        if not channel:
            return SendResult(ok=True, error="warroom: no channel to archive")
        if not done.get("archived"):
            self._call(
                "conversations.archive",
                self.client.conversations_archive,
                {"already_archived"},
                channel=channel,
            )
            done["archived"] = "true"
        return SendResult(ok=True, provider_id=channel, thread=done)

    def _create(self, n: Notification) -> tuple[str, str]:
        for attempt in range(1, 10):
            suffix = "" if attempt == 1 else f"-{attempt}"
            name = self._name(n, suffix)
            try:
                response = self.client.conversations_create(name=name, is_private=False)
            except SlackApiError as exc:
                if _code(exc) != "name_taken":
                    raise _Failed(classify(exc, "conversations.create")) from None
                existing = self._ours(name)
                if existing is not None:
                    return existing, name
                continue
            except Exception as exc:
                raise _Failed(classify(exc, "conversations.create")) from None
            return str((response.get("channel") or {}).get("id")), name
        raise _Failed(SendResult(ok=False, error="warroom: every channel name is taken"))

    def _ours(self, name: str) -> str | None:
        """The id of the open channel `name` if our bot created it (an earlier attempt)."""
        bot = self._bot()
        cursor: str | None = None
        for _ in range(slack_find.MAX_PAGES):
            page = self._call(
                "conversations.list",
                self.client.conversations_list,
                set(),
                types="public_channel",
                exclude_archived=True,
                limit=1000,
                cursor=cursor,
            )
            for channel in page.get("channels") or []:
                if channel.get("name") == name:
                    return str(channel["id"]) if channel.get("creator") == bot else None
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None
        return None

    def _bot(self) -> str:
        if self._bot_user is None:
            answer = self._call("auth.test", self.client.auth_test, set())
            self._bot_user = str(answer.get("user_id") or "")
        return self._bot_user

    def _invite(self, channel: str, users: list[str]) -> None:
        for user in users:
            self._call(
                "conversations.invite",
                self.client.conversations_invite,
                INVITE_SKIPPED,
                channel=channel,
                users=user,
            )

    def _post(self, channel: str, n: Notification) -> str:
        answer = self._call(
            "chat.postMessage",
            self.client.chat_postMessage,
            set(),
            channel=channel,
            text=render.fallback_text(n, n.title),
            blocks=render.message_blocks(n, n.title),
            unfurl_links=False,
            metadata=slack_find.metadata(n.delivery_id, n.incident_id),
        )
        return str(answer.get("ts"))

    def _link(self, factory: sessionmaker[Session], n: Notification, done: dict[str, str]) -> None:
        threads = people.main_threads(factory, n.incident_id)
        if not threads and people.slack_pending(factory, n.incident_id):
            raise _Failed(
                SendResult(
                    ok=False,
                    retryable=True,
                    retry_after=LINK_WAIT_SECONDS,
                    error="warroom: waiting for the incident's Slack message to link from",
                )
            )
        text = f"War room: <#{done['channel']}|{done.get('name', '')}>"
        for thread in threads:
            if self._find_post(thread.channel, n.delivery_id, thread.ts):
                continue
            self._call(
                "chat.postMessage",
                self.client.chat_postMessage,
                set(),
                channel=thread.channel,
                thread_ts=thread.ts,
                text=text,
                unfurl_links=False,
                metadata=slack_find.metadata(n.delivery_id, n.incident_id),
            )

    def _find_post(self, channel: str, delivery_id: int, thread_ts: str | None) -> str | None:
        """An earlier attempt's post (by its metadata), so it is not made twice."""
        try:
            return slack_find.find_post(self.client, channel, EPOCH, delivery_id, thread_ts)
        except Exception as exc:
            raise _Failed(classify(exc, "conversations.history")) from None

    def _call(self, method: str, call: Any, tolerated: set[str] | frozenset[str], **kw: Any) -> Any:
        try:
            return call(**kw)
        except SlackApiError as exc:
            if _code(exc) in tolerated:
                return exc.response
            raise _Failed(classify(exc, method)) from None
        except Exception as exc:
            raise _Failed(classify(exc, method)) from None

    def _name(self, n: Notification, suffix: str = "") -> str:
        return channel_name(self.settings.channel_prefix, n.incident_id, n.title, suffix)


def _code(exc: SlackApiError) -> str:
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    return str(data.get("error") or "")


@register("warroom")
def build_warroom(settings: Any) -> WarRoomNotifier:
    """The war-room channel, from a mapping of Slack settings plus `channel_prefix`."""
    return WarRoomNotifier(WarRoomChannelSettings.model_validate(dict(settings)))
