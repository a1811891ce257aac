"""Symptoms update, debounced: a storm of joining alerts is one page, a handful of message
edits and thread replies, and the replies count every alert that joined. The embedded
notify worker sends through the real slack-sdk to the Slack stand-in; on SQLite and on
PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import utcnow
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.stage import insert_rows
from incidents.notify.update_fold import Updates, fold
from tests.api.incident_pipe import alert, recent
from tests.notify.fake_slack import FakeSlack
from tests.notify.test_outbox import incident
from tests.notify.test_outbox import sessions as outbox_sessions
from tests.notify.test_routing_stage import notifications, start, wait_until

# The database of the test's `db_url`, as the outbox tests open it.
sessions = outbox_sessions

BODIES, PER_BODY = 50, 10
MAX_EDITS = 10


def joined_in(text: str) -> int:
    """How many joined alerts a thread reply accounts for."""
    many = sum(int(n) for n in re.findall(r"(\d+) alerts joined", text))
    return many + len(re.findall(r"alert on \S+ joined:", text))


def test_500_joining_alerts_are_a_handful_of_edits_that_count_them_all(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    with FakeSlack() as slack:
        pipe = start(db_url, client_for, slack, hold=0)
        pipe.load_graph()
        t0 = recent(5)
        pipe.post(alert("database-postgres", "PostgresDown", t0, "P0"))
        wait_until("the page", lambda: len(slack.calls("chat.postMessage")) == 1)
        services = ("database-postgres", "user-service")
        for body in range(BODIES):
            pipe.post(
                *[
                    alert(services[i % 2], f"Symptom{body}x{i}", t0 + timedelta(seconds=1), "P1")
                    for i in range(PER_BODY)
                ]
            )
        [incident] = pipe.live()
        iid = incident["id"]
        assert len(pipe.incident(iid)["alerts"]) == 1 + BODIES * PER_BODY

        def settled() -> bool:
            rows = notifications(pipe, iid)
            return all(n["status"] in ("sent", "cancelled") for n in rows)

        wait_until("every update sent", settled, timeout=60)
        edits = slack.calls("chat.update")
        replies = [c for c in slack.calls("chat.postMessage") if c.body.get("thread_ts")]
        assert len(slack.top_level()) == 1
        assert 1 <= len(edits) <= MAX_EDITS, len(edits)
        assert 1 <= len(replies) <= MAX_EDITS, len(replies)
        # No join is left out of the thread: the replies add up to every joined alert.
        assert sum(joined_in(r.body["text"]) for r in replies) == BODIES * PER_BODY
        updates = [n for n in notifications(pipe, iid) if n["event"] == "updated"]
        assert len([n for n in updates if n["status"] == "sent"]) == len(edits)


def test_joins_fold_into_one_line_that_counts_them() -> None:
    one = "alert on billing joined: depends on ledger"
    assert fold([], [one]) == [one]
    assert fold([one], ["alert on ledger joined: root"]) == ["2 alerts joined, on billing, ledger"]
    assert fold(["10 alerts joined, on api, db"], ["5 alerts joined, on db, cache"]) == [
        "15 alerts joined, on api, db, cache"
    ]
    # Other lines are kept once; a long list of services is cut, the count is not.
    many = [f"alert on s{i} joined: x" for i in range(12)]
    assert fold(["new root: db"], ["new root: db", *many]) == [
        "new root: db",
        "12 alerts joined, on s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 ...",
    ]


def _would_be(incident_id: int, entry: int, line: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "incident_id": incident_id,
        "event_key": f"entry:{entry}",
        "event": "updated",
        "receiver": "critical",
        "channel": "slack",
        "target": "#incidents",
        "status": "pending",
        "attempts": 0,
        "not_before": now,
        "created_at": now,
        "updated_at": now,
        "details": [line],
    }


def _route(sessions: sessionmaker[Session], iid: int, *entries: int) -> list[dict[str, Any]]:
    """Route joins (one alert on `svc<entry>` each) as the routing stage does, in one job."""
    with sessions.begin() as session:
        updates = Updates(session, [iid], [f"entry:{e}" for e in entries])
        rows = [updates.route(_would_be(iid, e, f"alert on svc{e} joined: x")) for e in entries]
        kept = [r for r in rows if r is not None]
        updates.store(session)
        if kept:
            insert_rows(session, kept)
    return kept


def _updates(sessions: sessionmaker[Session], iid: int) -> list[tuple[str, str, list[str]]]:
    n = NOTIFICATIONS.c
    with sessions() as session:
        found = session.execute(
            sa.select(n.event_key, n.status, n.details).where(n.incident_id == iid).order_by(n.id)
        )
        return [(key, status, list(details)) for key, status, details in found]


def test_a_join_routed_twice_is_folded_once_and_a_taken_update_gets_a_successor(
    sessions: sessionmaker[Session],
) -> None:
    iid = incident(sessions)
    _route(sessions, iid, 1, 2)
    assert _updates(sessions, iid) == [
        ("entry:1", "pending", ["2 alerts joined, on svc1, svc2"]),
        ("entry:2", "cancelled", ["alert on svc2 joined: x"]),
    ]
    # A later slice of the same job sees entry 2 again, and entry 3 for the first time.
    assert len(_route(sessions, iid, 2, 3)) == 1
    assert _updates(sessions, iid)[0] == (
        "entry:1",
        "pending",
        ["3 alerts joined, on svc1, svc2, svc3"],
    )
    # The worker takes the waiting update while a job folds into it: the folded lines
    # go out as an update of their own, carried by the first folded row.
    with sessions.begin() as session:
        updates = Updates(session, [iid], ["entry:4", "entry:5"])
        rows = [updates.route(_would_be(iid, e, f"alert on svc{e} joined: x")) for e in (4, 5)]
        with sessions.begin() as worker:
            worker.execute(
                NOTIFICATIONS.update()
                .where(NOTIFICATIONS.c.event_key == "entry:1")
                .values(status="sending")
            )
        updates.store(session)
        insert_rows(session, [r for r in rows if r is not None])
    assert _updates(sessions, iid)[0][:2] == ("entry:1", "sending")
    assert _updates(sessions, iid)[3:] == [
        ("entry:4", "pending", ["2 alerts joined, on svc4, svc5"]),
        ("entry:5", "cancelled", ["alert on svc5 joined: x"]),
    ]
    # Once nothing waits, the next join is an update of its own.
    with sessions.begin() as session:
        session.execute(NOTIFICATIONS.update().values(status="sent"))
    _route(sessions, iid, 6)
    assert _updates(sessions, iid)[-1] == ("entry:6", "pending", ["alert on svc6 joined: x"])
