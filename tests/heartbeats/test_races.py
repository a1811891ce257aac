"""Several processes at once: two upkeeps open one incident, two pings store one resolve.

Each test holds the first actor inside its transaction, after its decisive UPDATE and
before it stores the synthetic alert, while the second one runs into the same row. On
PostgreSQL the second waits for the row lock and then finds the condition false; on
SQLite it waits for the one writer. Either way only the first stores anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from incidents.heartbeats import inject, monitor
from incidents.pipeline.maintenance import maintain
from tests.heartbeats.conftest import WATCHDOG, Beats


class Held:
    """Wraps a function so that its first call waits until released."""

    def __init__(self, inner: Callable[..., Any]) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.entered.set()
            assert self.release.wait(timeout=30)
        return self.inner(*args, **kwargs)


def _both(first: Callable[[], Any], second: Callable[[], Any], held: Held) -> list[Any]:
    results: list[Any] = [None, None]
    errors: list[BaseException] = []

    def run(index: int, work: Callable[[], Any]) -> None:
        try:
            results[index] = work()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    one = threading.Thread(target=run, args=(0, first))
    one.start()
    assert held.entered.wait(timeout=30)
    two = threading.Thread(target=run, args=(1, second))
    two.start()
    time.sleep(0.5)  # the second reaches the row the first holds
    held.release.set()
    for thread in (one, two):
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_two_upkeeps_at_once_open_one_incident(
    beats: Beats, monkeypatch: pytest.MonkeyPatch
) -> None:
    beats.define(WATCHDOG)
    beats.clock.advance(minutes=6)
    held = Held(inject.write)
    monkeypatch.setattr(inject, "write", held)
    state = beats.state

    def upkeep() -> list[int]:
        return maintain(state.sessions, state.settings)

    first, second = _both(upkeep, upkeep, held)
    assert len(first) == 1 and second == []
    assert beats.heartbeat_deliveries() == 1
    for job_id in first:
        state.dispatcher.dispatch(job_id)
    beats.wait()
    [incident] = beats.incidents()
    assert incident["severity"] == "P1" and incident["status"] == "open"
    assert beats.upkeep() == []  # and a third, later, finds nothing to do


def test_two_pings_of_a_missed_heartbeat_store_one_resolve(
    beats: Beats, monkeypatch: pytest.MonkeyPatch
) -> None:
    beats.define(WATCHDOG)
    beats.clock.advance(minutes=6)
    beats.upkeep()
    assert beats.heartbeat_deliveries() == 1
    held = Held(inject.resolves)
    monkeypatch.setattr(inject, "resolves", held)
    state = beats.state
    now = beats.clock.advance(seconds=5)

    def ping() -> int | None:
        with state.sessions.begin() as session:
            _, job_id = monitor.ping_named(session, "alertmanager", now, state.settings)
        return job_id

    first, second = _both(ping, ping, held)
    assert first is not None and second is None
    assert held.calls == 1
    assert beats.heartbeat_deliveries() == 2
    state.dispatcher.dispatch(first)
    beats.wait()
    [incident] = beats.incidents()
    assert incident["status"] == "resolved"
    assert beats.status()["alertmanager"]["state"] == "alive"
