"""Messages people post in a war-room channel become notes on the incident's timeline.

Slack may deliver one event more than once (it retries when we answer slowly): the
event's id is kept on the note, and an event already recorded is not recorded again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.db import session_scope
from incidents.models import TIMELINE
from incidents.oncall.lookup import user_by_slack_id
from incidents.pipeline import actions
from incidents.pipeline.actions import Actor
from incidents.pipeline.runner import route_events
from incidents.pipeline.stages import TaskRef
from incidents.vocab import TimelineKind
from incidents.warroom.people import war_room_of_channel

NOTE_LIMIT = 4000
EVENT_KEY = "slack_event"


def record_message(
    factory: sessionmaker[Session],
    settings: Settings,
    event_id: str,
    event: dict[str, Any],
    now: datetime,
) -> tuple[str, list[TaskRef]]:
    """Record one `message` event as a note; say what was done ('recorded', 'duplicate',
    'ignored: ...') and what to hand on after commit."""
    if event.get("bot_id") or event.get("subtype"):
        return "ignored: not a person's message", []
    text = str(event.get("text") or "").strip()
    channel, user = str(event.get("channel") or ""), str(event.get("user") or "")
    if not text or not channel or not user:
        return "ignored: no text, channel or user", []
    with session_scope(factory) as session:
        incident_id = war_room_of_channel(session, channel)
        if incident_id is None:
            return "ignored: not a war-room channel", []
        actions.load(session, incident_id)  # the incident's lock: one delivery at a time
        if event_id and _recorded(session, incident_id, event_id):
            return "duplicate", []
        person = user_by_slack_id(session, user)
        actor = Actor(person.name if person is not None else user, "slack")
        events = actions.add_note(session, incident_id, actor, text[:NOTE_LIMIT], now)
        for made in events:
            data = {**made.data, EVENT_KEY: event_id, "slack_channel": channel}
            session.execute(
                update(TIMELINE).where(TIMELINE.c.id == made.entry_id).values(data=data)
            )
        tasks = route_events(session, settings, events, now)
    return "recorded", tasks


def _recorded(session: Session, incident_id: int, event_id: str) -> bool:
    t = TIMELINE.c
    notes = session.scalars(
        select(t.data).where(t.incident_id == incident_id, t.kind == TimelineKind.NOTE)
    )
    return any(isinstance(d, dict) and d.get(EVENT_KEY) == event_id for d in notes)
