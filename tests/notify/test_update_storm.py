"""Symptoms update, debounced: a storm of joining alerts is one page, a handful of message
edits and thread replies, and the replies count every alert that joined. The embedded
notify worker sends through the real slack-sdk to the Slack stand-in; on SQLite and on
PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient

from incidents.notify.update_fold import fold
from tests.api.incident_pipe import alert, recent
from tests.notify.fake_slack import FakeSlack
from tests.notify.test_routing_stage import notifications, start, wait_until

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
