"""The approval request as each channel renders it: its detail lines, the SMS text, the
email, and the Slack post (threaded, or alone before the incident has a message)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from incidents.notify import gsm
from incidents.notify.approval_note import Ask, details, read
from incidents.notify.base import Notification
from incidents.notify.channels.email_render import EmailTemplates
from incidents.notify.channels.slack import SlackNotifier, SlackSettings
from incidents.notify.channels.sms import MAX_SEGMENTS, approval_text
from tests.acting.stage import ALICE
from tests.notify.fake_slack import FakeSlack
from tests.remediation.approval_stage import buttons

ASK = {
    "run_id": 7,
    "playbook": "service-down",
    "step": "scale_up",
    "action": "kubernetes.scale",
    "code": 4821,
    "expires_at": "2026-12-06T11:30:00+00:00",
}


def note(
    reply_code: int | None = None,
    target: str = ALICE,
    thread: dict[str, str] | None = None,
    **ask: object,
) -> Notification:
    return Notification(
        delivery_id=1, incident_id=12, event="approval", severity="P1", status="triggered",
        title="ServiceDown on api", services=("api",), root_cause="api", root_reason=None,
        blast_radius=(), url="", target=target, thread=thread or {},
        details=tuple(details({**ASK, **ask})), reply_code=reply_code,
    )  # fmt: skip


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_the_details_read_back() -> None:
    lines = details(ASK)
    assert "expires at 2026-12-06 11:30 UTC" in lines[-1]
    expected = Ask(7, "service-down", "scale_up", "kubernetes.scale", 4821, "2026-12-06 11:30 UTC")
    assert read(lines) == expected
    assert read(["3 alerts joined"]) is None


def test_the_sms_text() -> None:
    assert approval_text(note(12)) == (
        "P1 #12 playbook service-down wants to run scale_up (kubernetes.scale). "
        "Reply 12y to approve, 12n to reject (or approve 4821)"
    )
    assert approval_text(note(None)).endswith("Reply approve 4821 or reject 4821")
    long = approval_text(note(3, playbook="p" * 128, step="s" * 64, action="x." + "y" * 60))
    assert gsm.segments(long) <= MAX_SEGMENTS
    assert long.endswith("Reply 3y to approve, 3n to reject (or approve 4821)")


def test_the_email_says_what_waits_and_how_to_answer() -> None:
    mail = EmailTemplates().render(note(target="oncall@example.org"))
    assert mail.subject.startswith("Approval needed: ")
    assert "wants to run step scale_up (kubernetes.scale) in run 7" in mail.text
    assert "POST /api/v1/playbook-runs/7/approve" in mail.text


def test_slack_replies_in_the_thread_or_posts_alone(slack: FakeSlack) -> None:
    channel = SlackNotifier(SlackSettings(bot_token=slack.token, api_url=slack.api_url))
    alone = channel.send(note(target="#incidents"))
    # No incident message yet: its own post, which does not become the incident's thread.
    assert alone.ok and alone.thread == {}
    [posted] = slack.top_level()
    assert posted.ts == alone.provider_id and list(buttons(posted.body)) == [
        "playbook_approve",
        "playbook_reject",
    ]
    thread = {"channel": posted.channel, "ts": "1.000001"}
    replied = channel.send(note(target="#incidents", thread=thread))
    assert replied.ok and replied.thread == thread
    [reply] = slack.replies("#incidents", "1.000001")
    assert buttons(reply.body)["playbook_reject"]["value"] == "7"
    assert not slack.calls("chat.update")  # the incident's message is left as it is
