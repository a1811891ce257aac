"""Notify tasks, on the `notify` queue: drain one channel, sweep, send digests.

A message only says "look at this channel": the outbox rows are the work. So a message
lost with a killed worker, delivered twice, or arriving late changes nothing: the beat
sweep hands out every channel that has due rows, and each row is sent under its own
fenced lease (see incidents.notify.outbox and incidents.notify.drain).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import redis

from incidents.config import get_settings
from incidents.notify import outbox
from incidents.notify.drain import ChannelLock, drain
from incidents.notify.pacing import RedisPacer
from incidents.notify.setup import make_notify_worker
from incidents.notify.worker import NotifyWorker
from incidents.tasks import DIGEST_TASK, NOTIFY_QUEUE, NOTIFY_SWEEP_TASK, NOTIFY_TASK
from workers.app import celery_app, session_factory

log = logging.getLogger(__name__)

# How long one task drains its channel before leaving the rest to the next hand-off.
DRAIN_BUDGET_SECONDS = 20.0


@lru_cache(maxsize=1)
def _redis() -> redis.Redis[bytes]:
    return redis.Redis.from_url(get_settings().broker_url, socket_timeout=5)


@lru_cache(maxsize=1)
def notifier() -> NotifyWorker:
    """This process's notify worker: its channels, and pacing shared through Redis."""
    return make_notify_worker(session_factory(), get_settings(), pacer=RedisPacer(_redis()))


@celery_app.task(name=NOTIFY_TASK)  # type: ignore[untyped-decorator]
def deliver(channel: str) -> int:
    """Send the channel's due notifications (-1: another worker is at it)."""
    settings = get_settings().notify
    lease = settings.lease_seconds
    lock = ChannelLock(_redis(), channel, ttl_seconds=lease)
    handled = drain(notifier(), channel, lock, min(DRAIN_BUDGET_SECONDS, lease / 2))
    if handled >= 0:
        # Rows waiting for a provider's pace (Slack: 1 post/s per channel) can go within a
        # second or so: look again then rather than at the next sweep.
        wait = notifier().pace_wait(channel)
        if wait is not None and wait < settings.sweep_interval_seconds:
            deliver.apply_async(
                kwargs={"channel": channel}, queue=NOTIFY_QUEUE, countdown=max(wait, 0.05)
            )
    return handled


@celery_app.task(name=NOTIFY_SWEEP_TASK)  # type: ignore[untyped-decorator]
def sweep() -> list[str]:
    """Hand out every channel with due notifications."""
    channels = outbox.due_channels(session_factory())
    for channel in channels:
        deliver.apply_async(kwargs={"channel": channel}, queue=NOTIFY_QUEUE)
    return channels


@celery_app.task(name=DIGEST_TASK)  # type: ignore[untyped-decorator]
def digest() -> int:
    """Send the daily digests that are due."""
    return notifier().send_digests()
