"""Provider budgets and the one-drainer-per-channel lock, in memory and in a real Redis."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from incidents.notify.base import Notification, SendResult
from incidents.notify.channels.slack import SlackNotifier, SlackSettings
from incidents.notify.drain import ChannelLock, drain
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.pacing import LocalPacer, Pacer, RedisPacer
from incidents.notify.worker import MIN_INTERVAL, SLACK_UPDATE_INTERVAL, NotifyWorker
from tests.notify.fake_slack import FakeSlack
from tests.notify.test_outbox import incident, queue, row, sessions

__all__ = ["sessions"]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    connection: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture(params=["memory", "redis"])
def pacer(request: pytest.FixtureRequest) -> Pacer:
    if request.param == "memory":
        return LocalPacer()
    return RedisPacer(request.getfixturevalue("client"))


def test_slots_are_handed_out_one_interval_apart(pacer: Pacer) -> None:
    waits = [pacer.take("slack:post:#a", 1.0)[1] for _ in range(3)]
    assert waits[0] == pytest.approx(0, abs=0.05)
    assert waits[1] == pytest.approx(1.0, abs=0.05)
    assert waits[2] == pytest.approx(2.0, abs=0.05)
    # Another key has its own slots.
    assert pacer.take("slack:post:#b", 1.0) == (True, pytest.approx(0, abs=0.05))


def test_a_slot_not_free_now_is_not_reserved_when_asked_not_to(pacer: Pacer) -> None:
    assert pacer.take("slack:update", 0.3, reserve_later=False)[0]
    reserved, wait = pacer.take("slack:update", 0.3, reserve_later=False)
    assert not reserved and 0.2 < wait <= 0.3
    # Refusing reserved nothing: once the slot is free it is the next caller's.
    time.sleep(wait + 0.02)
    assert pacer.take("slack:update", 0.3, reserve_later=False) == (
        True,
        pytest.approx(0, abs=0.05),
    )


def test_workers_sharing_redis_share_the_budget(client: redis.Redis[bytes]) -> None:
    first, second = RedisPacer(client), RedisPacer(client)
    assert first.take("slack:post:#a", 1.0)[1] == pytest.approx(0, abs=0.05)
    assert second.take("slack:post:#a", 1.0)[1] == pytest.approx(1.0, abs=0.05)


def test_without_redis_pacing_falls_back_to_memory() -> None:
    unreachable: redis.Redis[bytes] = redis.Redis(port=1, socket_connect_timeout=0.2)
    pacer = RedisPacer(unreachable)
    assert pacer.take("k", 1.0)[0]
    # Still paced, and Redis is left alone for a while rather than retried per send.
    started = time.monotonic()
    assert pacer.take("k", 1.0)[1] > 0.5
    assert time.monotonic() - started < 0.1


def test_one_drainer_per_channel_and_the_lock_lapses(client: redis.Redis[bytes]) -> None:
    first = ChannelLock(client, "slack", ttl_seconds=0.5)
    second = ChannelLock(client, "slack", ttl_seconds=0.5)
    assert first.acquire() and not second.acquire()
    assert ChannelLock(client, "sms", ttl_seconds=0.5).acquire()  # channels are apart
    time.sleep(0.6)  # its holder was killed: the lock lapses by itself
    assert second.acquire()
    assert not first.extend()  # the first holder cannot take it back
    first.release()  # nor release what is not its own
    assert not ChannelLock(client, "slack", ttl_seconds=0.5).acquire()
    second.release()
    assert ChannelLock(client, "slack", ttl_seconds=0.5).acquire()


class Recording:
    """A channel that records sends; slow, so that two drainers overlap."""

    name = "slack"

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.lock = threading.Lock()

    def send(self, notification: Notification) -> SendResult:
        time.sleep(0.05)
        with self.lock:
            self.sent.append(notification.delivery_id)
        return SendResult(ok=True, provider_id=str(notification.delivery_id))


def test_concurrent_drains_send_each_notification_once_in_order(
    sessions: sessionmaker[Session], client: redis.Redis[bytes]
) -> None:
    iid = incident(sessions)
    ids = [queue(sessions, iid, "slack", f"#c{i}", key=f"entry:{i}") for i in range(6)]
    channel = Recording()
    worker = NotifyWorker(sessions, {"slack": channel}, public_url="", pacer=LocalPacer())
    results: list[int] = []

    def run() -> None:
        lock = ChannelLock(client, "slack", ttl_seconds=5)
        results.append(drain(worker, "slack", lock, budget_seconds=5))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert channel.sent == ids  # once each, in order
    assert sorted(results)[:2] == [-1, -1] and max(results) == 6
    assert {row(sessions, i).status for i in ids} == {"sent"}


def test_a_drain_sees_what_was_handed_on_while_it_held_the_lock(
    sessions: sessionmaker[Session], client: redis.Redis[bytes]
) -> None:
    iid = incident(sessions)
    first = queue(sessions, iid, "slack", "#a")
    late: list[int] = []

    class Adding(Recording):
        def send(self, notification: Notification) -> SendResult:
            if not late:  # committed while this drain runs; its own hand-off found the lock
                late.append(queue(sessions, iid, "slack", "#b", key="entry:2"))
            return super().send(notification)

    channel = Adding()
    worker = NotifyWorker(sessions, {"slack": channel}, public_url="")
    assert drain(worker, "slack", ChannelLock(client, "slack", 5), budget_seconds=5) == 2
    assert channel.sent == [first, late[0]]


def _as_update(sessions: sessionmaker[Session], ids: list[int]) -> None:
    from incidents.notify.models import THREADS

    with sessions.begin() as session:
        session.execute(
            sa.update(NOTIFICATIONS).where(NOTIFICATIONS.c.id.in_(ids)).values(event="updated")
        )
        incident_ids = session.scalars(
            sa.select(NOTIFICATIONS.c.incident_id).where(NOTIFICATIONS.c.id.in_(ids))
        )
        for iid in set(incident_ids):
            targets = session.scalars(
                sa.select(NOTIFICATIONS.c.target).where(NOTIFICATIONS.c.incident_id == iid)
            )
            for target in set(targets):
                session.execute(
                    THREADS.insert().values(
                        incident_id=iid,
                        channel="slack",
                        target=target,
                        thread={"channel": "C1", "ts": "1.0"},
                        updated_at=sa.func.now(),
                    )
                )


def test_slack_edits_wait_for_their_own_budget_and_posts_go_on(
    sessions: sessionmaker[Session],
) -> None:
    incidents = [incident(sessions) for _ in range(3)]
    edits = [queue(sessions, i, "slack", f"#e{n}", key="update:1") for n, i in enumerate(incidents)]
    _as_update(sessions, edits)
    post = queue(sessions, incident(sessions), "slack", "#posts")
    channel = Recording()
    worker = NotifyWorker(sessions, {"slack": channel}, public_url="")

    worker.run_once("slack")

    # One edit had a slot; the others wait in the outbox (not dropped), the post went.
    assert channel.sent == [edits[0], post]
    waiting = [row(sessions, i) for i in edits[1:]]
    assert {r.status for r in waiting} == {"pending"}
    assert {r.attempts for r in waiting} == {0}
    started = time.monotonic()
    while len(channel.sent) < 4 and time.monotonic() - started < 10:
        worker.run_once("slack")
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    # Each waiting edit went once its slot came: two more slots after the first.
    assert sorted(channel.sent[2:]) == edits[1:]
    assert elapsed >= 2 * SLACK_UPDATE_INTERVAL * 0.9


def test_the_embedded_worker_is_woken_by_the_pipelines_hand_off(
    sessions: sessionmaker[Session],
) -> None:
    from incidents.pipeline.stages import TaskRef
    from incidents.tasks import NOTIFY_TASK

    channel = Recording()
    worker = NotifyWorker(sessions, {"slack": channel}, public_url="", poll_seconds=30)
    worker.start()
    try:
        time.sleep(0.2)  # idle: waiting for its (long) poll
        nid = queue(sessions, incident(sessions), "slack", "#a")
        woken = time.monotonic()
        worker.hand_on([TaskRef(NOTIFY_TASK, {"channel": "slack"})])
        while not channel.sent and time.monotonic() - woken < 5:
            time.sleep(0.01)
        assert channel.sent == [nid] and time.monotonic() - woken < 1
    finally:
        worker.stop()


def test_a_slack_429_holds_the_channel_for_retry_after(sessions: sessionmaker[Session]) -> None:
    iid = incident(sessions)
    first = queue(sessions, iid, "slack", "#a", key="entry:1")
    second = queue(sessions, iid, "slack", "#a", key="entry:2")

    class Limited(Recording):
        def send(self, notification: Notification) -> SendResult:
            super().send(notification)
            if notification.delivery_id == first and len(self.sent) == 1:
                return SendResult(ok=False, retryable=True, retry_after=1.5, error="ratelimited")
            return SendResult(ok=True)

    channel = Limited()
    pacer = LocalPacer()
    worker = NotifyWorker(sessions, {"slack": channel}, public_url="", pacer=pacer)
    started = time.monotonic()
    worker.run_once("slack")
    # The second send was put back until the Retry-After is over, not sent into a 429
    # of its own, and the sender did not wait for it.
    assert channel.sent == [first]
    assert time.monotonic() - started < 1.0
    assert row(sessions, first).status == "pending" and row(sessions, second).status == "pending"
    while len(channel.sent) < 2 and time.monotonic() - started < 10:
        worker.run_once("slack")
        time.sleep(0.05)
    assert channel.sent == [first, second]
    assert time.monotonic() - started >= 1.4
    assert row(sessions, second).status == "sent"


def test_a_slack_429_holds_only_the_budget_it_answered_for(pacer: Pacer) -> None:
    pacer.hold("slack:post:#a", 0.5)
    # Held: refused now, free once the hold is over; other keys never were held.
    assert pacer.take_now([("slack:post:#b", 1.0)]) == (True, pytest.approx(0, abs=0.05))
    reserved, wait = pacer.take_now([("slack:post:#a", 1.0), ("slack:update", 1.0)])
    assert not reserved and 0.4 < wait <= 0.5
    # Refusing reserved neither key: the edit budget is still free.
    assert pacer.take_now([("slack:update", 1.0)])[0]
    # A hold never shortens a slot already further off.
    pacer.hold("slack:update", 0.1)
    assert pacer.take_now([("slack:update", 1.0)])[1] > 0.8


def _slack_worker(sessions: sessionmaker[Session], slack: FakeSlack, pacer: Pacer) -> NotifyWorker:
    for name in ("#a", "#b"):
        slack.add_channel(name)
    channel = SlackNotifier(SlackSettings(bot_token=slack.token, api_url=slack.api_url))
    return NotifyWorker(sessions, {"slack": channel}, public_url="", pacer=pacer, poll_seconds=0.05)


def _posts(slack: FakeSlack, count: int, timeout: float = 20) -> list[tuple[str, float]]:
    started = time.monotonic()
    while len(slack.calls("chat.postMessage")) < count and time.monotonic() - started < timeout:
        time.sleep(0.02)
    return [(r.body["channel"], r.at) for r in slack.calls("chat.postMessage")]


def test_posts_queued_for_one_channel_do_not_hold_up_another(
    sessions: sessionmaker[Session], pacer: Pacer
) -> None:
    with FakeSlack() as slack:
        worker = _slack_worker(sessions, slack, pacer)
        for _ in range(4):
            queue(sessions, incident(sessions), "slack", "#a")
        queue(sessions, incident(sessions), "slack", "#b")
        worker.start()
        try:
            posts = _posts(slack, 5)
        finally:
            worker.stop()
    assert sorted(c for c, _ in posts) == ["#a"] * 4 + ["#b"]
    first = posts[0][1]
    b_at = next(at for c, at in posts if c == "#b")
    assert b_at - first < 1.0  # not behind #a's queue (it went last, ~3 s on, before)
    a_at = [at for c, at in posts if c == "#a"]
    assert min(later - earlier for earlier, later in itertools.pairwise(a_at)) >= 1.0


def test_a_429_in_one_channel_does_not_delay_another(
    sessions: sessionmaker[Session], pacer: Pacer
) -> None:
    with FakeSlack() as slack:
        worker = _slack_worker(sessions, slack, pacer)
        limited = queue(sessions, incident(sessions), "slack", "#a")
        queue(sessions, incident(sessions), "slack", "#a")
        queue(sessions, incident(sessions), "slack", "#b")
        slack.fail_next(status=429, retry_after=2)  # the first request: #a's
        worker.start()
        try:
            posts = _posts(slack, 4)
        finally:
            worker.stop()
    assert [c for c, _ in posts[:1]] == ["#a"] and sorted(c for c, _ in posts) == [
        "#a",
        "#a",
        "#a",
        "#b",
    ]
    refused = posts[0][1]
    b_at = next(at for c, at in posts if c == "#b")
    assert b_at - refused < 1.0
    # #a waited out Retry-After, and its two posts (the refused one again) stayed 1 s apart.
    a_after = [at for c, at in posts[1:] if c == "#a"]
    assert a_after[0] - refused >= 2.0 and a_after[1] - a_after[0] >= 1.0
    assert row(sessions, limited).status == "sent"


def test_a_drain_stays_for_paced_rows_and_takes_new_ones_meanwhile(
    sessions: sessionmaker[Session], client: redis.Redis[bytes]
) -> None:
    with FakeSlack() as slack:
        worker = _slack_worker(sessions, slack, LocalPacer())
        for _ in range(3):
            queue(sessions, incident(sessions), "slack", "#a")
        queued: list[float] = []

        def hand_on_later() -> None:  # its own hand-off would find the lock taken
            time.sleep(0.5)
            queue(sessions, incident(sessions), "slack", "#b")
            queued.append(time.time())

        later = threading.Thread(target=hand_on_later)
        later.start()
        started = time.monotonic()
        handled = drain(worker, "slack", ChannelLock(client, "slack", 5), budget_seconds=10)
        later.join()
        posts = [(r.body["channel"], r.at) for r in slack.calls("chat.postMessage")]
    # One drain sent the channel's whole queue, a second apart, not just its first post.
    assert handled >= 4 and sorted(c for c, _ in posts) == ["#a"] * 3 + ["#b"]
    assert time.monotonic() - started >= 2.0
    assert next(at for c, at in posts if c == "#b") - queued[0] < 0.5


def test_a_queue_for_a_busy_channel_stays_queued_in_order(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slot longer than Slack's, so that a slow database cannot outlast it mid-test.
    monkeypatch.setitem(MIN_INTERVAL, "slack", 3.0)
    queued = [queue(sessions, incident(sessions), "slack", "#a") for _ in range(25)]
    other = queue(sessions, incident(sessions), "slack", "#b")
    due = {i: row(sessions, i).not_before for i in queued}
    channel = Recording()
    worker = NotifyWorker(sessions, {"slack": channel}, public_url="")

    worker.run_once("slack")  # claims 20 of #a's queue: one goes, its slot is taken
    # #a's queue is not claimed again while its slot is taken; #b's post is.
    assert worker.run_once("slack") == 1
    assert channel.sent == [queued[0], other]
    waiting = [row(sessions, i) for i in queued[1:]]
    assert {r.status for r in waiting} == {"pending"} and {r.attempts for r in waiting} == {0}
    assert all(r.not_before == due[r.id] for r in waiting)  # in its place in the queue
    assert 1.0 < (worker.pace_wait("slack") or 0) <= 3.0
    time.sleep(worker.pace_wait("slack") or 0)
    worker.run_once("slack")
    assert channel.sent == [queued[0], other, queued[1]]


def test_a_drain_leaves_a_channel_held_by_retry_after_to_the_sweep(
    sessions: sessionmaker[Session], client: redis.Redis[bytes]
) -> None:
    with FakeSlack() as slack:
        worker = _slack_worker(sessions, slack, LocalPacer())
        refused = queue(sessions, incident(sessions), "slack", "#a")
        waiting = queue(sessions, incident(sessions), "slack", "#a")
        slack.fail_next(status=429, retry_after=5)
        started = time.monotonic()
        drain(worker, "slack", ChannelLock(client, "slack", 5), budget_seconds=10)
        elapsed = time.monotonic() - started
        requests = len(slack.calls("chat.postMessage"))
    # #a is held for 5 s: the drain neither waits for it nor spins on its queue.
    assert elapsed < 2.5 and requests == 1
    assert worker.pace_wait("slack") == pytest.approx(5, abs=1)
    assert {row(sessions, i).status for i in (refused, waiting)} == {"pending"}
