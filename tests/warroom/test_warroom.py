"""The P0 war room: made once through the outbox with the real slack-sdk client against
the local Slack stand-in, resumed after a partial failure, archived after the resolve."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa

from incidents.db import session_scope, utcnow
from incidents.escalation import engine
from incidents.escalation.directory import Directory
from incidents.notify.channels.warroom import channel_name
from tests.conftest import AUTH
from tests.warroom.conftest import Room
from tests.warroom.fake_slack_rooms import BOT_USER


def _made(room: Room, incident_id: int) -> None:
    [created] = room.slack.rooms
    assert created.name.startswith(f"inc-{incident_id}-")
    assert re.fullmatch(r"[a-z0-9_-]{1,80}", created.name)


def test_a_p0_opening_makes_one_war_room(room: Room) -> None:
    incident_id = room.page("P0")
    room.send()
    [row] = room.rows(incident_id)
    assert (row["event"], row["status"]) == ("opened", "sent"), row
    _made(room, incident_id)
    [created] = room.slack.rooms
    # The first level's on-call (alice) and the root-cause team's on-call (dana).
    assert set(created.members) == {BOT_USER, "U0ALICE", "U0DANA"}
    posts = [m for m in room.slack.top_level() if m.channel == created.id]
    assert len(posts) == 1
    blocks = posts[0].body["blocks"]
    assert any(b["type"] == "actions" for b in blocks)  # Acknowledge / Resolve
    assert created.pins == [posts[0].ts]
    # Linked in the incident's main Slack thread.
    main = room.slack.channel_id("incidents-critical")
    [top] = [m for m in room.slack.top_level() if m.channel == main]
    [link] = room.slack.replies(main, top.ts)
    assert f"<#{created.id}|{created.name}>" in link.body["text"]
    assert room.incident(incident_id)["war_room"] == {
        "channel": created.id,
        "name": created.name,
        "archived": False,
    }
    # Sending again changes nothing.
    room.send()
    assert len(room.slack.calls("conversations.create")) == 1


def test_a_retry_after_a_failed_pin_makes_no_second_channel(room: Room) -> None:
    room.slack.fail_method("pins.add", "internal_error")
    incident_id = room.page("P0")
    room.send()
    [row] = room.rows(incident_id)
    assert row["status"] == "pending" and "pins.add" in row["error"], row
    room.make_due(incident_id)
    room.worker.run_once("warroom")
    [row] = room.rows(incident_id)
    assert row["status"] == "sent", row
    _made(room, incident_id)
    assert len(room.slack.calls("conversations.create")) == 1
    assert len(room.slack.calls("pins.add")) == 2
    [created] = room.slack.rooms
    assert len([m for m in room.slack.top_level() if m.channel == created.id]) == 1
    assert len(created.pins) == 1


def test_a_channel_whose_progress_was_lost_is_found_and_reused(room: Room) -> None:
    # Killed after the create and the post, before it could keep its progress: the
    # retry finds its channel by name (made by our bot) and its post by its metadata.
    room.slack.fail_method("pins.add", "internal_error")
    incident_id = room.page("P0")
    room.send()
    with room.sessions() as session:
        session.execute(
            sa.text("DELETE FROM notification_threads WHERE channel = 'warroom'"),
        )
        session.commit()
    room.make_due(incident_id)
    room.worker.run_once("warroom")
    [row] = room.rows(incident_id)
    assert row["status"] == "sent", row
    [created] = room.slack.rooms
    assert len([m for m in room.slack.top_level() if m.channel == created.id]) == 1
    assert room.incident(incident_id)["war_room"]["channel"] == created.id


def test_a_name_taken_by_someone_else_gets_a_suffix(room: Room) -> None:
    incident_id = room.page("P0")
    title = room.incident(incident_id)["title"]
    taken = channel_name("inc", incident_id, title)
    room.slack.add_room(taken, "U0SOMEONE")
    room.send()
    [created] = room.slack.rooms
    assert created.name == channel_name("inc", incident_id, title, "-2")


def test_a_p1_gets_no_war_room(room: Room) -> None:
    incident_id = room.page("P1")
    room.send()
    assert room.rows(incident_id) == []
    assert room.slack.calls("conversations.create") == []
    assert room.incident(incident_id)["war_room"] is None


def test_switched_off_there_is_none(room_for: Callable[..., Room]) -> None:
    room = room_for(warroom={"enabled": False})
    incident_id = room.page("P0")
    room.send()
    assert room.rows(incident_id) == []
    assert room.slack.calls("conversations.create") == []


def test_resolve_archives_after_the_delay_and_reopen_cancels(
    room_for: Callable[..., Room],
) -> None:
    room = room_for(warroom={"archive_after": "2h"})
    incident_id = room.page("P0")
    room.send()
    resolved = utcnow()
    response = room.client.post(f"/api/v1/incidents/{incident_id}/resolve", headers=AUTH)
    assert response.status_code == 200, response.text
    [_, archive] = room.rows(incident_id)
    assert (archive["event"], archive["status"]) == ("archive", "pending")
    wait = archive["not_before"] - resolved
    assert timedelta(hours=2) - timedelta(minutes=1) < wait < timedelta(hours=2, minutes=1)
    room.worker.run_once("warroom")  # not due yet
    assert room.slack.calls("conversations.archive") == []
    # Reopened before it was due: the archive is cancelled.
    response = room.client.post(f"/api/v1/incidents/{incident_id}/reopen", headers=AUTH)
    assert response.status_code == 200, response.text
    assert room.rows(incident_id)[1]["status"] == "cancelled"
    # Resolved again: a new archive row, sent once due.
    response = room.client.post(f"/api/v1/incidents/{incident_id}/resolve", headers=AUTH)
    assert response.status_code == 200, response.text
    room.make_due(incident_id)
    room.worker.run_once("warroom")
    assert [r["status"] for r in room.rows(incident_id)] == ["sent", "cancelled", "sent"]
    [call] = room.slack.calls("conversations.archive")
    [created] = room.slack.rooms
    assert call.body["channel"] == created.id and created.archived
    assert room.incident(incident_id)["war_room"]["archived"] is True


def test_levels_the_escalation_already_paged_are_invited_too(room: Room) -> None:
    incident_id = room.page("P0")
    for later in (timedelta(0), timedelta(minutes=6)):  # level 1, then level 2 (bob)
        with session_scope(room.sessions) as session:
            engine.sweep(session, Directory(session), utcnow() + later)
    room.send()
    [created] = room.slack.rooms
    assert set(created.members) == {BOT_USER, "U0ALICE", "U0BOB", "U0DANA"}
    assert room.rows(incident_id)[0]["status"] == "sent"
