"""Whom a war room invites, and where it is linked from: read from the database when
the war-room notification is sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import rowcount, session_scope
from incidents.escalation.directory import Directory
from incidents.escalation.policy import Policy, Target
from incidents.models import Incident
from incidents.notify.models import NOTIFICATIONS, THREADS
from incidents.oncall.lookup import directory as people_directory
from incidents.warroom.rows import CHANNEL, TARGET


@dataclass(frozen=True, slots=True)
class MainThread:
    """The incident's own Slack message in one channel."""

    channel: str
    ts: str


def invitees(factory: sessionmaker[Session], incident_id: int, at: datetime) -> list[str]:
    """Slack user ids of the people the incident's escalation pages (at least its first
    level, up to the level it reached) and of the root-cause team's on-call, at `at`."""
    with session_scope(factory) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return []
        targets: list[Target] = [Target(root_team_oncall=True)]
        escalation: dict[str, Any] = dict(incident.escalation or {})
        if escalation.get("policy"):
            policy = Policy.model_validate(escalation["policy"])
            # `level` is the next level to page: those before it have paged (all of
            # them once the ladder went round); the first one at least.
            went_round = escalation.get("done") or int(escalation.get("round") or 0) > 0
            paged = len(policy.levels) if went_round else int(escalation.get("level") or 0)
            for level in policy.levels[: max(1, paged)]:
                targets += [t for t in level.targets if t.slack_channel is None]
        resolver = Directory(session)
        people = people_directory(session)
        found: list[str] = []
        for target in targets:
            pages, _ = resolver.resolve(target, incident, at)
            for page in pages:
                user = people.user_by_name(page.who)
                if user is not None and user.slack_user_id and user.slack_user_id not in found:
                    found.append(user.slack_user_id)
        return found


def main_threads(factory: sessionmaker[Session], incident_id: int) -> list[MainThread]:
    """The incident's Slack messages (one per Slack target it was posted to)."""
    t = THREADS.c
    with session_scope(factory) as session:
        threads = session.scalars(
            select(t.thread).where(t.incident_id == incident_id, t.channel == "slack")
        ).all()
    return [
        MainThread(str(th["channel"]), str(th["ts"]))
        for th in threads
        if isinstance(th, dict) and th.get("channel") and th.get("ts")
    ]


def slack_pending(factory: sessionmaker[Session], incident_id: int) -> bool:
    """Whether the incident's first Slack message is still on its way."""
    n = NOTIFICATIONS.c
    with session_scope(factory) as session:
        found = session.scalar(
            select(n.id)
            .where(n.incident_id == incident_id, n.channel == "slack")
            .where(n.status.in_(("pending", "sending")))
            .limit(1)
        )
    return found is not None


def progress(factory: sessionmaker[Session], incident_id: int) -> dict[str, str]:
    """How far the war room got: channel id and name, message ts, pinned, linked."""
    t = THREADS.c
    with session_scope(factory) as session:
        found = session.scalar(
            select(t.thread).where(
                t.incident_id == incident_id, t.channel == CHANNEL, t.target == TARGET
            )
        )
    return {str(k): str(v) for k, v in (found or {}).items()}


def save_progress(
    factory: sessionmaker[Session], incident_id: int, done: dict[str, str], now: datetime
) -> None:
    """Keep how far the war room got, so a retry picks up where this attempt stopped."""
    t = THREADS.c
    key = (t.incident_id == incident_id, t.channel == CHANNEL, t.target == TARGET)
    with session_scope(factory) as session:
        changed = session.execute(THREADS.update().where(*key).values(thread=done, updated_at=now))
        if rowcount(changed):
            return
        session.execute(
            THREADS.insert().values(
                incident_id=incident_id,
                channel=CHANNEL,
                target=TARGET,
                thread=done,
                updated_at=now,
            )
        )


def war_room_of_channel(session: Session, slack_channel: str) -> int | None:
    """The incident whose war room is this Slack channel id, if any."""
    t = THREADS.c
    rows = session.execute(
        select(t.incident_id, t.thread).where(t.channel == CHANNEL, t.target == TARGET)
    ).all()
    for incident_id, thread in rows:
        if isinstance(thread, dict) and thread.get("channel") == slack_channel:
            return int(incident_id)
    return None


def war_room_link(session: Session, incident_id: int) -> dict[str, str] | None:
    """The incident's war room for the API: channel id, name and state."""
    t = THREADS.c
    found = session.scalar(
        select(t.thread).where(
            t.incident_id == incident_id, t.channel == CHANNEL, t.target == TARGET
        )
    )
    if not isinstance(found, dict) or not found.get("channel"):
        return None
    return {
        "channel": str(found["channel"]),
        "name": str(found.get("name", "")),
        "archived": "true" if found.get("archived") else "false",
    }
