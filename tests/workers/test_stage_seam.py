"""The stage seam: events for later stages, after-commit hand-off, and bounded upkeep."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory, stored_id, utcnow
from incidents.models import Alert, AlertState, PipelineJob
from incidents.pipeline import maintenance
from incidents.pipeline.runner import run_job
from incidents.pipeline.stages import IncidentEvent, RunContext, TaskRef
from incidents.vocab import TimelineKind
from tests.conftest import make_settings
from tests.factories import stored_alert


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def _alert(name: str, service: str = "billing", severity: str = "P1") -> Alert:
    now = utcnow()
    labels = {"alertname": name, "service": service}
    alert: Alert = stored_alert(
        labels,
        service=service,
        severity=severity,
        starts_at=now - timedelta(minutes=1),
        received=now,
    )
    return alert


def _job(sessions: sessionmaker[Session], *alerts: Alert) -> int:
    with sessions.begin() as session:
        for alert in alerts:
            session.add(alert)
        job = PipelineJob(created_at=utcnow(), fingerprints=[a.fingerprint for a in alerts])
        session.add(job)
    return stored_id(job)


class Handing:
    """A later stage: it reads the events the incident stage left and hands on a task."""

    name = "handing"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[IncidentEvent] = []

    def run(self, ctx: RunContext) -> None:
        self.seen = list(ctx.events)
        ctx.after_commit.append(TaskRef("notify", {"events": len(ctx.events)}))
        if self.fail:
            raise RuntimeError("the stage fails after queueing its task")


def test_later_stages_see_the_events_and_tasks_go_out_only_after_commit(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    from incidents.pipeline.incidents import IncidentStage

    settings = make_settings(db_url)
    job_id = _job(sessions, _alert("InvoicesStuck"))
    later = Handing()
    handed: list[tuple[list[TaskRef], str]] = []

    def on_commit(tasks: list[TaskRef]) -> None:
        with sessions() as session:  # a new session sees only what was committed
            status = session.scalar(sa.text(f"SELECT status FROM pipeline_jobs WHERE id={job_id}"))
        handed.append((tasks, str(status)))

    events: list[IncidentEvent] = []
    stages = [IncidentStage(settings), later]
    assert run_job(sessions, job_id, settings, stages, on_commit=on_commit, events=events) == "done"
    [opened] = later.seen
    assert (opened.kind, opened.pages, opened.severity) == (TimelineKind.OPENED, True, "P1")
    assert events == later.seen
    assert handed == [([TaskRef("notify", {"events": 1})], "done")]


def test_a_failed_job_hands_nothing_on(db_url: str, sessions: sessionmaker[Session]) -> None:
    settings = make_settings(db_url)
    job_id = _job(sessions, _alert("InvoicesStuck"))
    handed: list[list[TaskRef]] = []
    result = run_job(sessions, job_id, settings, [Handing(fail=True)], on_commit=handed.append)
    assert result == "pending"
    assert handed == []


def test_the_muted_alert_check_goes_through_them_in_bounded_batches(
    db_url: str, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(db_url)
    monkeypatch.setattr(maintenance, "BATCH", 3)
    monkeypatch.setattr(maintenance, "_cursor", {})
    now = utcnow()
    alerts = [_alert(f"Muted{n}", severity="P2") for n in range(5)]
    with sessions.begin() as session:
        for alert in alerts:
            session.add(alert)
            # Recorded as inhibited by an alert that no longer exists: free to go.
            session.add(
                AlertState(
                    fingerprint=alert.fingerprint,
                    last_status="firing",
                    last_state_at=now,
                    updated_at=now,
                    inhibited_by=["gone"],
                )
            )
    ordered = sorted(a.fingerprint for a in alerts)
    with sessions() as session:
        first = maintenance.unmuted_alerts(session, settings)
        second = maintenance.unmuted_alerts(session, settings)
        third = maintenance.unmuted_alerts(session, settings)
    assert first == ordered[:3]
    assert second == ordered[3:]
    assert third == ordered[:3]  # round again from the start
