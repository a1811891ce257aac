"""An SMS reply from a user's phone, read and acted on in the caller's transaction."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from threading import Lock

from sqlalchemy.orm import Session

from incidents.acting import approvals, sms_store
from incidents.acting.perform import Verb, perform
from incidents.acting.sms_reply import HELP, Command, parse
from incidents.notify import gsm
from incidents.oncall.lookup import user_by_phone
from incidents.pipeline.actions import Actor
from incidents.pipeline.stages import IncidentEvent, TaskRef

log = logging.getLogger(__name__)

# A reply is kept within this many SMS segments.
REPLY_SEGMENTS = 2
VERBS: dict[str, Verb] = {"acknowledge": "acknowledge", "resolve": "resolve"}


@dataclass
class Outcome:
    """What to text back (None: nothing), and the events the actions caused."""

    reply: str | None
    events: list[IncidentEvent] = field(default_factory=list)
    # The reply says the message was not understood (those are rate-limited).
    not_understood: bool = False
    # To hand on after commit (an approved playbook run).
    tasks: list[TaskRef] = field(default_factory=list)


def handle(session: Session, phone: str, body: str, now: datetime) -> Outcome:
    """Read one reply from `phone` and do what it says."""
    command = parse(body)
    if command is not None and command.kind == "opt_out":
        sms_store.opt_out(session, phone, command.word, now)
        log.info("sms: %s opted out (%s); nothing more is texted to it", phone, command.word)
        return Outcome(None)  # Twilio answers STOP itself
    if command is not None and command.kind == "opt_in":
        if sms_store.opt_in(session, phone):
            log.info("sms: %s opted back in (%s)", phone, command.word)
        return Outcome(None)  # Twilio answers START itself
    user = user_by_phone(session, phone)
    if user is None:
        log.warning("sms: a reply from %s, which is no user's phone, was ignored", phone)
        return Outcome(None)
    if command is None:
        said = " ".join(body.split())[:40]
        return Outcome(gsm.fit(f"Not understood: {said!r}. {HELP}", REPLY_SEGMENTS), [], True)
    if command.kind == "decide":
        return _decide(session, phone, command, user.name, now)
    return _act(session, phone, command, Actor(user.name, "sms"), now)


def _decide(session: Session, phone: str, command: Command, actor: str, now: datetime) -> Outcome:
    """Approve or reject a waiting playbook step, named by incident code or approval code."""
    approve = command.action == "approve"
    if command.scope == "approval":
        assert command.number is not None
        decided = approvals.decide_by_code(
            session, command.number, approve=approve, actor=actor, via="sms", now=now
        )
        return Outcome(gsm.fit(decided.text, REPLY_SEGMENTS), tasks=decided.tasks)
    if command.scope == "code":
        assert command.number is not None
        incident_id = sms_store.by_code(session, phone, command.number)
        if incident_id is None:
            return Outcome(f"No open incident has code {command.number} for this phone. {HELP}")
    else:
        incident_id = sms_store.last_paged(session, phone)
        if incident_id is None:
            return Outcome("No open incident was texted to this phone.")
    decided = approvals.decide_for_incident(
        session, incident_id, approve=approve, actor=actor, via="sms", now=now
    )
    return Outcome(gsm.fit(decided.text, REPLY_SEGMENTS), tasks=decided.tasks)


def _act(session: Session, phone: str, command: Command, actor: Actor, now: datetime) -> Outcome:
    assert command.action is not None
    if command.scope == "id":
        assert command.number is not None
        targets = [command.number]
    elif command.scope == "code":
        assert command.number is not None
        found = sms_store.by_code(session, phone, command.number)
        if found is None:
            return Outcome(f"No open incident has code {command.number} for this phone. {HELP}")
        targets = [found]
    elif command.scope == "last":
        last = sms_store.last_paged(session, phone)
        targets = [last] if last is not None else []
    else:
        targets = sms_store.open_incidents(session, phone)
    if not targets:
        return Outcome("No open incident was texted to this phone.")
    lines: list[str] = []
    events: list[IncidentEvent] = []
    for incident_id in targets:
        done = perform(session, incident_id, VERBS[command.action], actor, now)
        lines.append(done.text)
        events += done.events
    return Outcome(gsm.fit("; ".join(lines), REPLY_SEGMENTS), events)


class ReplyLimit:
    """At most `count` "not understood" replies per number in `window` seconds."""

    def __init__(self, count: int = 3, window: float = 600.0) -> None:
        self.count, self.window = count, window
        self._seen: dict[str, deque[float]] = {}
        self._lock = Lock()

    def allow(self, phone: str) -> bool:
        """Record one reply to `phone` if it is allowed now."""
        now = time.monotonic()
        with self._lock:
            times = self._seen.setdefault(phone, deque())
            while times and now - times[0] > self.window:
                times.popleft()
            if len(times) >= self.count:
                return False
            times.append(now)
            if len(self._seen) > 10_000:  # bounded: forget numbers gone quiet
                for key in [k for k, v in self._seen.items() if not v]:
                    del self._seen[key]
            return True
