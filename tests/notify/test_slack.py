"""The Slack channel, through the real slack_sdk WebClient, against a local fake Slack."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from incidents.notify.base import Notification, SendResult, build
from incidents.notify.channels.slack import SlackNotifier, SlackSettings
from tests.notify.fake_slack import FakeSlack


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def settings_for(slack: FakeSlack, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = {
        "bot_token": slack.token,
        "api_url": slack.api_url,
        "timeout_seconds": 2,
    }
    return SlackSettings(**{**values, **overrides})


def channel(slack: FakeSlack, **overrides: Any) -> SlackNotifier:
    notifier = build("slack", settings_for(slack, **overrides))
    assert isinstance(notifier, SlackNotifier)
    return notifier


def notification(**overrides: Any) -> Notification:
    values: dict[str, Any] = {
        "delivery_id": 7,
        "incident_id": 42,
        "event": "opened",
        "severity": "P0",
        "status": "open",
        "title": "Checkout errors <5xx> & timeouts",
        "services": ("checkout", "payments"),
        "root_cause": "payments-db",
        "root_reason": "lowest alerting service: checkout and payments depend on it",
        "blast_radius": tuple(f"svc-{i:02d}" for i in range(14)),
        "url": "https://incidents.example/incidents/42",
        "target": "#incidents-critical",
    }
    values.update(overrides)
    return Notification(**values)


def opened(slack: FakeSlack, notifier: SlackNotifier) -> SendResult:
    result = notifier.send(notification())
    assert result.ok, result.error
    return result


def block(blocks: list[dict[str, Any]], kind: str, block_id: str | None = None) -> dict[str, Any]:
    for b in blocks:
        if b["type"] == kind and (block_id is None or b.get("block_id") == block_id):
            return b
    raise AssertionError(f"no {kind} block {block_id or ''} in {blocks}")


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for e in block(blocks, "actions")["elements"]}


# The first message ---------------------------------------------------------------------


def test_first_send_posts_the_incident_message_with_blocks(slack: FakeSlack) -> None:
    result = channel(slack).send(notification())

    [post] = slack.requests
    assert post.method == "chat.postMessage"
    assert post.headers["Authorization"] == f"Bearer {slack.token}"
    body = post.body
    assert body["channel"] == "#incidents-critical"
    assert "Checkout errors" in body["text"] and "[P0]" in body["text"]
    # Slack markup characters in the title are escaped in mrkdwn text.
    assert "&lt;5xx&gt; &amp; timeouts" in body["text"]
    blocks = body["blocks"]
    header = block(blocks, "header")["text"]["text"]
    assert "P0" in header and "Checkout errors <5xx> & timeouts" in header
    facts = " ".join(f["text"] for f in blocks[1]["fields"])
    assert "*Severity*\nP0" in facts and "*Status*\nopen" in facts and "#42" in facts
    root = block(blocks, "section", "root_cause")["text"]["text"]
    assert "`payments-db`" in root and "lowest alerting service" in root
    assert "checkout, payments" in block(blocks, "section", "services")["text"]["text"]
    blast = block(blocks, "section", "blast_radius")["text"]["text"]
    assert "svc-09 and 4 more" in blast and "svc-10" not in blast
    actions = buttons(blocks)
    assert actions["acknowledge"]["value"] == "42"
    assert actions["resolve"]["value"] == "42"
    assert actions["incident_open"]["url"] == "https://incidents.example/incidents/42"
    assert body["attachments"][0]["color"] == "#D92D20"

    ts = slack.top_level()[0].ts
    assert result == SendResult(
        ok=True,
        provider_id=ts,
        thread={"channel": slack.channel_id("incidents-critical"), "ts": ts},
    )


@pytest.mark.parametrize(
    ("severity", "colour"), [("P1", "#F79009"), ("P2", "#FDD835"), ("P3", "#98A2B3")]
)
def test_the_colour_follows_the_severity(slack: FakeSlack, severity: str, colour: str) -> None:
    assert channel(slack).send(notification(severity=severity)).ok
    assert slack.requests[0].body["attachments"][0]["color"] == colour


def test_without_a_root_cause_or_url_the_message_says_so_and_has_no_link(slack: FakeSlack) -> None:
    result = channel(slack).send(notification(root_cause=None, root_reason=None, url=""))
    assert result.ok
    blocks = slack.requests[0].body["blocks"]
    assert "not determined yet" in block(blocks, "section", "root_cause")["text"]["text"]
    assert set(buttons(blocks)) == {"acknowledge", "resolve"}


def test_a_channel_id_target_works_like_a_name(slack: FakeSlack) -> None:
    channel_id = slack.channel_id("incidents")
    result = channel(slack).send(notification(target=channel_id))
    assert result.ok and result.thread["channel"] == channel_id


# Later events on the incident's thread ---------------------------------------------------


def test_an_update_edits_the_message_and_replies_in_its_thread(slack: FakeSlack) -> None:
    notifier = channel(slack)
    first = opened(slack, notifier)
    details = ("KafkaLag joined (orders)", "root cause is now payments-db")

    result = notifier.send(
        notification(
            event="updated", thread=first.thread, details=details, services=("a", "b", "c")
        )
    )

    assert result == SendResult(ok=True, provider_id=first.provider_id, thread=first.thread)
    [update] = slack.calls("chat.update")
    assert update.body["channel"] == first.thread["channel"]
    assert update.body["ts"] == first.thread["ts"]
    assert "a, b, c" in block(update.body["blocks"], "section", "services")["text"]["text"]
    [reply] = slack.replies(first.thread["channel"], first.thread["ts"])
    assert "KafkaLag joined (orders)" in reply.body["text"]
    assert "root cause is now payments-db" in reply.body["text"]
    assert not reply.body.get("reply_broadcast")
    assert len(slack.top_level()) == 1
    assert slack.message(first.thread["channel"], first.thread["ts"]).edits == 1


@pytest.mark.parametrize("event", ["severity_raised", "reopened"])
def test_severity_raised_and_reopened_broadcast_their_reply(slack: FakeSlack, event: str) -> None:
    notifier = channel(slack)
    first = opened(slack, notifier)

    result = notifier.send(notification(event=event, severity="P0", thread=first.thread))

    assert result.ok
    [reply] = slack.replies(first.thread["channel"], first.thread["ts"])
    assert reply.body["reply_broadcast"] is True
    assert len(slack.top_level()) == 1


def test_resolved_edits_the_buttons_away_and_replies_quietly(slack: FakeSlack) -> None:
    notifier = channel(slack)
    first = opened(slack, notifier)

    result = notifier.send(notification(event="resolved", status="resolved", thread=first.thread))

    assert result.ok
    [update] = slack.calls("chat.update")
    assert set(buttons(update.body["blocks"])) == {"incident_open"}
    assert update.body["attachments"][0]["color"] == "#12B76A"
    [reply] = slack.replies(first.thread["channel"], first.thread["ts"])
    assert "resolved" in reply.body["text"] and not reply.body.get("reply_broadcast")


def test_a_failed_reply_is_retryable_and_the_retry_replies_once(slack: FakeSlack) -> None:
    notifier = channel(slack)
    first = opened(slack, notifier)
    update = notification(event="updated", thread=first.thread, details=("X joined",))
    slack.fail_next(status=429, after=1)  # the edit goes through, the reply is rate limited

    failed = notifier.send(update)
    assert not failed.ok and failed.retryable and failed.retry_after == 3
    assert slack.replies(first.thread["channel"], first.thread["ts"]) == []

    assert notifier.send(update).ok
    assert len(slack.replies(first.thread["channel"], first.thread["ts"])) == 1
    assert len(slack.top_level()) == 1


def test_opened_again_on_a_thread_only_edits(slack: FakeSlack) -> None:
    notifier = channel(slack)
    first = opened(slack, notifier)

    assert notifier.send(notification(thread=first.thread)) == first

    assert [r.method for r in slack.requests] == ["chat.postMessage", "chat.update"]


def test_acknowledged_keeps_only_the_resolve_button(slack: FakeSlack) -> None:
    notifier = channel(slack)
    first = opened(slack, notifier)

    assert notifier.send(
        notification(event="updated", status="acknowledged", thread=first.thread)
    ).ok

    [update] = slack.calls("chat.update")
    assert set(buttons(update.body["blocks"])) == {"incident_open", "resolve"}


def test_a_deleted_message_is_posted_again(slack: FakeSlack) -> None:
    notifier = channel(slack)
    gone = {"channel": slack.channel_id("incidents-critical"), "ts": "1600000000.000001"}

    result = notifier.send(notification(event="updated", thread=gone))

    assert result.ok and result.thread["ts"] != gone["ts"]
    assert [m.ts for m in slack.top_level()] == [result.thread["ts"]]


def test_huge_incidents_stay_within_slacks_limits(slack: FakeSlack) -> None:
    # The fake answers invalid_blocks past Slack's header and section limits.
    many = tuple(f"service-{i:03d}" for i in range(300))
    result = channel(slack).send(
        notification(title="x" * 500, services=many, blast_radius=many, root_reason="y" * 5000)
    )

    assert result.ok, result.error
    blocks = slack.requests[0].body["blocks"]
    assert len(block(blocks, "header")["text"]["text"]) == 150
    assert "and 290 more" in block(blocks, "section", "services")["text"]["text"]


# Failures ------------------------------------------------------------------------------


def test_a_429_is_retryable_after_the_retry_after_header(slack: FakeSlack) -> None:
    slack.fail_next(status=429, retry_after=3)

    result = channel(slack).send(notification())

    assert not result.ok and result.retryable and result.retry_after == 3
    assert "ratelimited" in (result.error or "")
    # One attempt only: the SDK must not retry on its own.
    assert len(slack.requests) == 1


def test_ratelimited_in_the_body_is_retryable_too(slack: FakeSlack) -> None:
    slack.fail_next(error="ratelimited")
    result = channel(slack).send(notification())
    assert not result.ok and result.retryable and result.retry_after is None


def test_a_500_is_retryable(slack: FakeSlack) -> None:
    slack.fail_next(status=500)

    result = channel(slack).send(notification())

    assert not result.ok and result.retryable and not result.target_unreachable
    assert "HTTP 500" in (result.error or "")
    assert len(slack.requests) == 1


def test_slack_internal_error_is_retryable(slack: FakeSlack) -> None:
    slack.fail_next(error="internal_error")
    result = channel(slack).send(notification())
    assert not result.ok and result.retryable and "internal_error" in (result.error or "")


def test_an_unknown_channel_is_unreachable(slack: FakeSlack) -> None:
    result = channel(slack).send(notification(target="#no-such-channel"))

    assert not result.ok and not result.retryable and result.target_unreachable
    assert "channel_not_found" in (result.error or "")


@pytest.mark.parametrize("code", ["not_in_channel", "is_archived"])
def test_a_channel_the_bot_cannot_post_to_is_unreachable(slack: FakeSlack, code: str) -> None:
    slack.fail_next(error=code)
    result = channel(slack).send(notification())
    assert not result.ok and not result.retryable and result.target_unreachable
    assert code in (result.error or "")


def test_a_wrong_token_is_not_retryable_and_says_so(slack: FakeSlack) -> None:
    result = channel(slack, bot_token="xoxb-wrong").send(notification())

    assert not result.ok and not result.retryable and not result.target_unreachable
    assert "invalid_auth" in (result.error or "") and "bot token" in (result.error or "")
    assert slack.requests[0].headers["Authorization"] == "Bearer xoxb-wrong"


@pytest.mark.parametrize("code", ["token_revoked", "account_inactive", "not_authed"])
def test_a_revoked_token_is_not_retryable(slack: FakeSlack, code: str) -> None:
    slack.fail_next(error=code)
    result = channel(slack).send(notification())
    assert not result.ok and not result.retryable and "bot token" in (result.error or "")


def test_no_token_fails_without_a_request(slack: FakeSlack) -> None:
    result = channel(slack, bot_token="").send(notification())
    assert not result.ok and not result.retryable and "bot_token" in (result.error or "")
    assert slack.requests == []


@pytest.mark.parametrize("code", ["msg_too_long", "invalid_blocks"])
def test_a_refused_message_is_not_retryable(slack: FakeSlack, code: str) -> None:
    slack.fail_next(error=code)
    result = channel(slack).send(notification())
    assert not result.ok and not result.retryable and not result.target_unreachable
    assert code in (result.error or "")


def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = SlackSettings(bot_token="xoxb-x", api_url=f"http://127.0.0.1:{port}/api/")
    result = build("slack", settings).send(notification())
    assert not result.ok and result.retryable and "network error" in (result.error or "")


# Templates and settings -------------------------------------------------------------


def test_templates_word_the_title_and_the_reply(slack: FakeSlack) -> None:
    notifier = channel(
        slack,
        title_template="{{ services | join('+') }}: {{ title | upper }}",
        reply_template="{{ summary }} ({{ details | length }}): {{ details | join('; ') }}",
    )
    first = opened(slack, notifier)
    notifier.send(notification(event="updated", thread=first.thread, details=("a", "b")))

    header = block(slack.requests[0].body["blocks"], "header")["text"]["text"]
    assert "checkout+payments: CHECKOUT ERRORS" in header
    [reply] = slack.replies(first.thread["channel"], first.thread["ts"])
    assert reply.body["text"] == "Incident updated. (2): a; b"


@pytest.mark.parametrize(
    "template",
    [
        "{{ title ",  # does not compile
        "{{ no_such_field }}",  # names nothing a notification has
        "{{ title.__class__.__mro__ }}",  # the sandbox refuses it
    ],
)
def test_a_bad_template_fails_at_build(template: str) -> None:
    with pytest.raises(ValueError, match="title_template"):
        build("slack", SlackSettings(bot_token="x", title_template=template))


@pytest.mark.parametrize(
    "values",
    [{"api_url": "slack.com/api"}, {"timeout_seconds": 0}, {"bot_tokn": "xoxb-typo"}],
)
def test_bad_settings_fail_at_build(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build("slack", values)


def test_build_reads_a_slack_section_or_a_mapping(slack: FakeSlack) -> None:
    @dataclasses.dataclass
    class Parent:
        slack: SlackSettings

    from_parent = build("slack", Parent(settings_for(slack)))
    from_mapping = build("slack", {"bot_token": slack.token, "api_url": slack.api_url})
    assert from_parent.send(notification()).ok and from_mapping.send(notification()).ok


# The fake itself, for the tests that reuse it ------------------------------------------


def test_the_fake_parses_form_bodies_too(slack: FakeSlack) -> None:
    from slack_sdk import WebClient

    client = WebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])
    blocks = '[{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]'
    response = client.api_call("chat.postMessage", data={"channel": "#incidents", "blocks": blocks})

    assert response["ok"] and response["channel"] == slack.channel_id("incidents")
    assert slack.requests[0].body["blocks"][0]["text"]["text"] == "hi"
    first, second = (client.chat_postMessage(channel="#incidents", text="x")["ts"] for _ in "12")
    assert first < second
