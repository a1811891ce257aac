"""The sweep under load: a call stops at its time budget and says more is due, its
callers (the embedded worker, the beat task) sweep again at once rather than after an
interval, and several sweepers share big batches on PostgreSQL without ever stepping
one incident twice. The escalating incidents are stored as the benchmark stores them:
a 3-level policy frozen on each, its first step due a day ahead."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.escalation import engine
from incidents.pipeline.stages import TaskRef
from tests.bench.escalation import prepare

DUE = timedelta(days=1, seconds=1)  # the first steps are due by then
NEXT = timedelta(seconds=6)  # the policy's levels wait 5 s


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    bound = create_db_engine(db_url)
    yield make_session_factory(bound)
    bound.dispose()


def steps_per_incident(sessions: sessionmaker[Session]) -> dict[int, int]:
    with sessions() as session:
        found = session.execute(
            sa.text(
                "SELECT incident_id, count(*) FROM timeline WHERE kind = 'escalated' "
                "GROUP BY incident_id"
            )
        ).all()
    return {int(i): int(n) for i, n in found}


def test_a_call_stops_at_its_time_budget_and_says_more_is_due(
    db_url: str, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare(db_url, 12)
    at = utcnow() + DUE
    monkeypatch.setattr(engine, "BATCH", 5)
    monkeypatch.setattr(engine, "BUDGET_SECONDS", 0.0)  # one batch per call, then stop
    calls = [engine.run_due(sessions, at) for _ in range(3)]
    assert [(c.steps, c.more) for c in calls] == [(5, True), (5, True), (2, False)]
    assert engine.run_due(sessions, at).steps == 0
    assert sorted(steps_per_incident(sessions).values()) == [1] * 12
    monkeypatch.setattr(engine, "BUDGET_SECONDS", 60.0)  # time enough: all in one call
    done = engine.run_due(sessions, at + NEXT)
    assert (done.steps, done.more) == (12, False)
    assert sorted(steps_per_incident(sessions).values()) == [2] * 12


def test_the_beat_task_sweeps_again_at_once_within_its_interval(
    db_url: str, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare(db_url, 10)
    with sessions.begin() as session:  # due now: run_for sweeps with the real clock
        session.execute(sa.text("UPDATE incidents SET escalation_due_at = :at"), {"at": utcnow()})
    monkeypatch.setattr(engine, "BATCH", 4)
    monkeypatch.setattr(engine, "BUDGET_SECONDS", 0.0)
    handed: list[TaskRef] = []
    assert engine.run_for(sessions, 0.0, handed.extend) == 4  # its time is up after one
    assert {t.kwargs["channel"] for t in handed} >= {"slack"}
    assert engine.run_for(sessions, 60.0, handed.extend) == 6  # the rest, at once
    assert sorted(steps_per_incident(sessions).values()) == [1] * 10


def test_the_embedded_worker_sweeps_again_at_once_while_more_is_due(
    db_url: str, client_for: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    interval = 5.0
    monkeypatch.setattr(engine, "BATCH", 4)
    monkeypatch.setattr(engine, "BUDGET_SECONDS", 0.0)
    prepare(db_url, 40)  # 10 calls' worth: 50 s if each waited an interval
    bound = create_db_engine(db_url)
    sessions = make_session_factory(bound)
    with sessions.begin() as session:
        session.execute(sa.text("UPDATE incidents SET escalation_due_at = :at"), {"at": utcnow()})
    started = time.monotonic()
    client_for(db_url, notify={"enabled": False}, pipeline={"escalation_sweep_seconds": interval})
    while len(steps_per_incident(sessions)) < 40 and time.monotonic() - started < 60:
        time.sleep(0.2)
    took = time.monotonic() - started
    stepped = steps_per_incident(sessions)
    bound.dispose()
    assert len(stepped) == 40  # (some may have climbed on: their next level is 5 s on)
    assert took < interval + 15, f"40 steps in batches of 4 took {took:.1f} s"


@pytest.mark.postgres
def test_three_sweepers_share_big_batches_and_never_step_one_incident_twice(
    pg_url: str,
) -> None:
    incidents = 2 * engine.BATCH + 300  # each sweeper finds full batches
    prepare(pg_url, incidents)
    bound = create_db_engine(pg_url)
    sessions = make_session_factory(bound)
    start = utcnow()

    def sweep_all(at: datetime) -> list[int]:
        gate = threading.Barrier(3)
        results: list[int] = []

        def sweeper() -> None:
            gate.wait(30)
            results.append(engine.run_due(sessions, at, budget=60.0).steps)

        threads = [threading.Thread(target=sweeper) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        return results

    first = sweep_all(start + DUE)
    assert sum(first) == incidents
    assert sorted(steps_per_incident(sessions).values()) == [1] * incidents
    second = sweep_all(start + DUE + NEXT)  # level 2 of every ladder
    assert sum(second) == incidents
    assert sorted(steps_per_incident(sessions).values()) == [2] * incidents
    with bound.connect() as conn:
        doubled = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT 1 FROM notifications GROUP BY incident_id, "
                "event_key, channel, target HAVING count(*) > 1) AS twice"
            )
        ).scalar()
        levels = conn.execute(
            sa.text("SELECT DISTINCT escalation->>'level' FROM incidents")
        ).scalars()
        assert doubled == 0 and set(levels) == {"2"}
    bound.dispose()
