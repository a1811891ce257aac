"""A channel's pace counts from each request, not from when its slot was taken: a slow
commit between the two must not bring two posts to Slack within a second."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from incidents.notify import outbox
from incidents.notify.pacing import LocalPacer
from tests.notify.fake_slack import FakeSlack
from tests.notify.test_outbox import incident, queue, sessions
from tests.notify.test_pacing import _posts, _slack_worker

__all__ = ["sessions"]

SLOW_COMMIT = 0.3


def test_a_slow_start_of_one_post_does_not_bring_the_next_closer(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    started = outbox.mark_started
    calls: list[float] = []

    def slow_first(*args: Any, **kwargs: Any) -> bool:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(SLOW_COMMIT)  # the first send's commit takes long
        return started(*args, **kwargs)

    monkeypatch.setattr(outbox, "mark_started", slow_first)
    with FakeSlack() as slack:
        worker = _slack_worker(sessions, slack, LocalPacer())
        for _ in range(3):
            queue(sessions, incident(sessions), "slack", "#a")
        worker.start()
        try:
            posts = _posts(slack, 3)
        finally:
            worker.stop()
    at = [t for _, t in posts]
    assert len(at) == 3
    # Taken 1.05 s apart, the second slot would have come 0.75 s after the first request.
    assert min(later - earlier for earlier, later in itertools.pairwise(at)) >= 1.0
