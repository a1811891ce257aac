"""The ingest hook: delivered alerts that match a heartbeat's `alert.matchers` are pings.

It runs after the ingest commit, in the writer thread. It keeps the compiled definitions
in memory and re-reads them (one primary-key read) at most every `REFRESH_SECONDS`, or at
once after a replacement through this process. When no heartbeat has alert matchers it
costs one comparison per batch; otherwise a dictionary look-up per firing alert (by its
`alertname`), and a database write only for a batch that holds a match.

Every delivery of a matching firing alert counts, including one the store recognised as
a duplicate: Alertmanager re-sends a firing group unchanged every `repeat_interval`, and
each re-send proves that it still works.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.db import session_scope
from incidents.ingest.store import Incoming
from incidents.vocab import AlertStatus

from . import clock, monitor, store
from .inject import SOURCE
from .spec import EMPTY, Definitions

log = logging.getLogger(__name__)

# How stale another replica's view of the definitions may be.
REFRESH_SECONDS = 5.0


class AlertPings:
    """Turns committed deliveries into heartbeat pings."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._factory = factory
        self._settings = settings
        self._refresh = refresh_seconds
        self._definitions: Definitions = EMPTY
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Read the definitions again before the next batch (they were just replaced)."""
        self._read_at = float("-inf")

    def definitions(self) -> Definitions:
        """The definitions, re-read when older than the refresh interval."""
        if time.monotonic() - self._read_at < self._refresh:
            return self._definitions
        with self._lock:
            if time.monotonic() - self._read_at >= self._refresh:
                try:
                    with session_scope(self._factory) as session:
                        self._definitions = store.definitions(session)
                except Exception:
                    log.warning("could not read the heartbeat definitions", exc_info=True)
                self._read_at = time.monotonic()
        return self._definitions

    def observe(self, items: Iterable[Incoming]) -> list[int]:
        """Ping every heartbeat a firing alert of these deliveries matches; return the
        pipeline jobs of the resolves that stored (a heartbeat that was missed)."""
        defined = self.definitions()
        if not defined.watches_alerts:
            return []
        pinged: set[str] = set()
        by_alertname = defined.by_alertname
        firing = AlertStatus.FIRING.value
        for item in items:
            if item.parsed.source == SOURCE:
                continue
            for alert in item.parsed.alerts:
                # The common case, an alert no heartbeat names: one dictionary look-up.
                if (
                    by_alertname.get(alert.labels.get("alertname", "")) is None
                    and not defined.others
                ) or alert.status != firing:
                    continue
                pinged.update(h.name for h in defined.pinged_by(alert.labels))
        if not pinged:
            return []
        now = clock.now()
        jobs: list[int] = []
        with session_scope(self._factory) as session:
            for name in sorted(pinged):
                job_id = monitor.ping(session, defined.by_name[name], now, self._settings)
                if job_id is not None:
                    jobs.append(job_id)
        return jobs


def apply_config_section(factory: sessionmaker[Session], settings: Settings) -> int | None:
    """At start-up: apply the config file's `heartbeats:` section if it changed since it
    was last applied; return the pipeline job of resolves it stored, if any."""
    if settings.heartbeats is None:
        return None
    with session_scope(factory) as session:
        defined = monitor.apply_section(session, settings, clock.now())
    if defined is None:
        return None
    store.log_replacement(defined.replacement)
    return defined.job_id
