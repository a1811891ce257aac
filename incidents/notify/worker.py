"""The notify worker: one thread per channel, so a slow or failing channel (Slack down)
never delays another (SMS). Each thread claims its channel's due notifications, renders
each from the incident as it is now, sends it once, and records the outcome.

Per target, sends are spaced by the channel's minimum interval (Slack: one post a second
per channel): a burst is queued in the outbox and sent in order, never dropped. Slack's
edits have a budget of their own (chat.update, about 50 a minute). The sender never
waits for a slot: a notification whose slot is not free goes back to the outbox, due
when it is, and the sender goes on with other targets, so a busy Slack channel never
delays a page to another. A 429's Retry-After holds only the budget Slack answered for
(the channel's posts, or the workspace's edits). Slots come from a pacer, shared in
Redis when several workers send.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from incidents.db import utcnow
from incidents.notify import digest, flood, outbox
from incidents.notify.base import Notification, Notifier, Reconciler, SendResult
from incidents.notify.pacing import LocalPacer, Pacer, Taken
from incidents.pipeline.stages import TaskRef
from incidents.tasks import NOTIFY_TASK

log = logging.getLogger(__name__)

# Seconds between two sends to one target, by channel (providers' documented limits).
# Slack: one post a second per channel; slots are 1.05 s apart so that jitter in request
# timing never lands two posts within one second at Slack's end.
MIN_INTERVAL = {"slack": 1.05}
# Seconds between two edits of Slack messages, workspace-wide (chat.update is Tier 3).
SLACK_UPDATE_INTERVAL = 1.2
# How often the embedded email thread looks for due digests.
DIGEST_CHECK_SECONDS = 30.0


class NotifyWorker:
    """Sends the outbox's notifications, a thread per channel."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        channels: Mapping[str, Notifier],
        *,
        public_url: str,
        max_attempts: int = 8,
        poll_seconds: float = 0.2,
        lease: timedelta = timedelta(seconds=60),
        digest_hour: int | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._factory = factory
        self._channels = dict(channels)
        self._public_url = public_url
        self._max_attempts = max_attempts
        self._poll = poll_seconds
        self._lease = lease
        self._digest_hour = digest_hour
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pacer = pacer or LocalPacer()
        self._wakes = {name: threading.Event() for name in self._channels}
        # The slots this worker took, and when the rows it put back fall due: a queue for
        # a busy target is left in the outbox, and a sender looks again when it frees.
        self._taken = Taken()

    def start(self) -> None:
        """Start one thread per channel."""
        for name in sorted(self._channels):
            thread = threading.Thread(
                target=self._loop, args=(name,), name=f"notify-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self, channel: str) -> None:
        """Look for due notifications of this channel now rather than at the next poll."""
        event = self._wakes.get(channel)
        if event is not None:
            event.set()

    def hand_on(self, tasks: list[TaskRef]) -> None:
        """Take the pipeline's after-commit hand-offs: wake the channels they name."""
        for ref in tasks:
            if ref.name == NOTIFY_TASK and ref.countdown <= 0:
                self.wake(str(ref.kwargs.get("channel")))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the sends in flight."""
        self._stop.set()
        for event in self._wakes.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def pace_wait(self, channel: str) -> float | None:
        """Seconds until a row waiting for a provider's pace can go: one this worker put
        back falls due, or a slot frees that due rows wait for; None if none waits."""
        held, busy = self._taken.waits(channel)
        if busy is not None and not outbox.has_due(self._factory, channel):
            busy = None  # nothing waits for the slot
        waits = [w for w in (held, busy) if w is not None]
        return min(waits) if waits else None

    def has_due(self, channel: str) -> bool:
        """Whether the channel has a notification due now that is not waiting for a slot
        this worker took."""
        return outbox.has_due(self._factory, channel, **self._skips(channel))

    def _skips(self, channel: str) -> dict[str, Any]:
        """What not to claim: rows for targets whose slot is taken, and edits while the
        edit budget is (see outbox.claim)."""
        busy = self._taken.busy(channel)
        return {
            "skip_targets": [k.split(":post:", 1)[1] for k in busy if ":post:" in k],
            "skip_updates": f"{channel}:update" in busy,
        }

    def send_digests(self) -> int:
        """Send the daily digests that are due; return how many emails went out."""
        if self._digest_hour is None or "email" not in self._channels:
            return 0
        return digest.send_digests(
            self._factory,
            self._channels["email"],
            hour=self._digest_hour,
            public_url=self._public_url,
        )

    def run_once(self, channel: str) -> int:
        """Send what is due on one channel now; return how many were handled."""
        items = outbox.claim(self._factory, channel, lease=self._lease, **self._skips(channel))
        plan = flood.plan(self._factory, channel, items)
        for item, until in plan.held:
            flood.hold(self._factory, item, until)
        # A batch waiting on a provider's pace must not outlive its lease: what is left
        # when half of it has passed goes back to the outbox for the next round.
        deadline = time.monotonic() + self._lease.total_seconds() / 2
        for item in plan.alone:
            if time.monotonic() > deadline or self._stop.is_set():
                flood.hold(self._factory, item, utcnow(), "handed back: the batch ran long")
                continue
            self._send(channel, item)
        for bundle in plan.bundles:
            self._send_summary(channel, bundle)
        return len(items)

    def _send(self, channel: str, item: outbox.Claimed) -> None:
        started = time.monotonic()
        try:
            notification = outbox.render(self._factory, item, self._public_url)
        except Exception as exc:
            log.exception("%s notification %s could not be rendered", channel, item.id)
            result = SendResult(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
            self._finish(channel, item, result, started)
            return
        if item.event == "updated" and not notification.thread:
            # Nothing posted yet to edit: the opening message, when it goes out,
            # shows the incident as it is then.
            outbox.supersede(self._factory, item, "no message to update yet")
            return
        if not self._paced(channel, [item], edit=bool(notification.thread)):
            return
        outcome = self._deliver(channel, item, notification)
        if outcome is not None:
            self._finish(channel, item, outcome, started)

    def _deliver(
        self, channel: str, item: outbox.Claimed, notification: Notification
    ) -> SendResult | None:
        """Send once: look first if an earlier attempt may have gone out, and commit that
        this one starts before making it. None if the lease was lost meanwhile."""
        notifier = self._channels[channel]
        reconciler = notifier if isinstance(notifier, Reconciler) else None
        try:
            if item.send_started_at is not None and reconciler is not None:
                found = reconciler.find(notification, item.send_started_at, item.send_key)
                if found is not None:
                    log.info(
                        "%s notification %s had gone out before (%s); not sent again",
                        channel,
                        item.id,
                        found.provider_id,
                    )
                    return found
            key = reconciler.attempt_key(notification) if reconciler is not None else None
            if not outbox.mark_started(self._factory, item, key):
                return None
            self._restart_slot(channel, item.target)
            return notifier.send(notification)
        except Exception as exc:  # a channel bug must not stop the others
            log.exception("%s notification %s raised", channel, item.id)
            return SendResult(
                ok=False, retryable=True, in_doubt=True, error=f"{type(exc).__name__}: {exc}"
            )

    def _restart_slot(self, channel: str, target: str) -> None:
        """Count the target's pace from the request itself, not from when its slot was
        taken: the commit in between can take long enough that two requests would
        otherwise reach the provider closer together than its limit."""
        interval = MIN_INTERVAL.get(channel, 0.0)
        if interval:
            key = f"{channel}:post:{target}"
            self._pacer.hold(key, interval)
            self._taken.mark(key, interval)

    def _send_summary(self, channel: str, bundle: list[outbox.Claimed]) -> None:
        """One send for several incidents waiting for one contact (flood limit)."""
        carrier, rest = bundle[0], bundle[1:]
        rendered = [outbox.render(self._factory, item, self._public_url) for item in bundle]
        lines = [(n.incident_id, n.severity, n.title) for n in rendered]
        details = flood.summary(lines)
        note = replace(
            rendered[0],
            event="summary",
            title=details[0],
            severity=min((n.severity for n in rendered), default=rendered[0].severity),
            details=details,
        )
        if not self._paced(channel, bundle, edit=False):
            return
        started = time.monotonic()
        result = self._deliver(channel, carrier, note)
        if result is None:
            return
        self._finish(channel, carrier, result, started)
        if result.ok:
            flood.mark_bundled(self._factory, rest, carrier.id)
        else:
            for item in rest:  # back in the queue; the next round bundles them again
                flood.hold(self._factory, item, utcnow())

    def _finish(
        self, channel: str, item: outbox.Claimed, result: SendResult, started: float
    ) -> None:
        if channel == "slack" and result.retry_after:
            # Slack's 429 is about a method's budget, not this one notification: hold
            # that budget for Retry-After, so the next sends wait too rather than each
            # earn a 429 of their own. chat.update's is the workspace's; a post's (or a
            # thread reply's) is its channel's, and other channels go on.
            key = "slack:update" if result.limited == "chat.update" else f"slack:post:{item.target}"
            self._pacer.hold(key, result.retry_after)
            self._taken.mark(key, result.retry_after)
        status = outbox.record(self._factory, item, result, max_attempts=self._max_attempts)
        log.info(
            "notification %s via %s to %s: %s in %.0f ms%s",
            item.id,
            channel,
            item.target,
            status,
            (time.monotonic() - started) * 1000,
            f" ({result.error})" if result.error else "",
        )

    def _paced(self, channel: str, items: list[outbox.Claimed], *, edit: bool) -> bool:
        """Take the slots a send needs if they are all free now; otherwise put its rows
        back, due when the slots are, and answer False (the sender goes on with others).

        Every send takes its target's post slot (an edit posts a thread reply too); a
        Slack edit also takes the workspace's edit budget.
        """
        target = items[0].target
        interval = MIN_INTERVAL.get(channel, 0.0)
        slots = [(f"{channel}:post:{target}", interval)] if interval else []
        if channel == "slack" and edit:
            slots.append(("slack:update", SLACK_UPDATE_INTERVAL))
        if not slots:
            return True
        why = (
            f"waiting for Slack's edit budget (chat.update) and 1 post/s in {target}"
            if edit
            else f"waiting for {channel}'s pace in {target} (1 post/s)"
        )
        left = self._taken.left([key for key, _ in slots])
        if left > 0:
            # Taken by this worker's own last send. While the target's slot is, the row
            # is not claimed again: back in the queue in its place; else due when free.
            keep = interval and self._taken.left([slots[0][0]]) > 0
            for item in items:
                until = item.due_at if keep else utcnow() + timedelta(seconds=left)
                flood.hold(self._factory, item, until, why)
            if not keep:
                self._taken.held(channel, left)
            return False
        reserved, wait = self._pacer.take_now(slots)
        if reserved:
            for key, seconds in slots:
                self._taken.mark(key, seconds)
            return True
        due = utcnow() + timedelta(seconds=wait)
        for item in items:
            flood.hold(self._factory, item, due, why)
        self._taken.held(channel, wait)
        return False

    def _loop(self, channel: str) -> None:
        next_digest = 0.0
        while not self._stop.is_set():
            try:
                if channel == "email" and time.monotonic() >= next_digest:
                    # The embedded default has no beat: the email thread sends digests.
                    next_digest = time.monotonic() + DIGEST_CHECK_SECONDS
                    self.send_digests()
                handled = self.run_once(channel)
            except Exception:
                log.exception("notify worker for %s failed; retrying", channel)
                handled = 0
            if not handled:
                paced = self.pace_wait(channel)
                wake = self._wakes[channel]
                wake.wait(self._poll if paced is None else min(self._poll, paced))
                wake.clear()
