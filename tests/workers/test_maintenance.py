"""Upkeep: expired silences un-mute firing alerts; quiet flapping incidents close."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col

from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import save_graph
from incidents.db import create_db_engine, make_session_factory, stored_id, utcnow
from incidents.models import Alert, AlertState, Incident, PipelineJob, Silence, TimelineEntry
from incidents.pipeline.maintenance import maintain
from incidents.pipeline.runner import run_job
from tests.conftest import ROOT, make_settings
from tests.factories import stored_alert


def _alert(fingerprint: str, service: str, status: str = "firing", minutes_ago: int = 5) -> Alert:
    now = utcnow()
    starts = now - timedelta(minutes=minutes_ago)
    alert: Alert = stored_alert(
        {"alertname": f"A-{fingerprint}", "service": service},
        service=service,
        severity="P1",
        starts_at=starts,
        received=now,
        status=status,
        ends_at=now - timedelta(minutes=minutes_ago - 1) if status == "resolved" else None,
    )
    alert.fingerprint = fingerprint
    return alert


def test_expired_silence_sends_a_firing_alert_back_through_the_pipeline(db_url: str) -> None:
    settings = make_settings(db_url)
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    graph = ServiceGraph.from_file(Path(ROOT) / "examples" / "services.yaml")
    now = utcnow()
    with sessions.begin() as session:
        save_graph(session, graph)
        session.add(_alert("f1", "cache-redis"))
        session.add(
            Silence(
                id="s1",
                matchers=['service="cache-redis"'],
                starts_at=now - timedelta(hours=1),
                ends_at=now + timedelta(hours=1),
                created_by="test",
                comment="planned work",
                created_at=now,
            )
        )
        job = PipelineJob(created_at=now, fingerprints=["f1"])
        session.add(job)
    assert run_job(sessions, stored_id(job), settings) == "done"
    with sessions() as session:
        state = session.get(AlertState, "f1")
        assert state is not None and state.silenced_by == ["s1"]
        assert session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 0
    assert maintain(sessions, settings) == []  # still silenced: nothing to do
    with sessions.begin() as session:
        silence = session.get(Silence, "s1")
        assert silence is not None
        silence.ends_at = utcnow() - timedelta(seconds=1)
    [job_id] = maintain(sessions, settings)
    assert run_job(sessions, job_id, settings) == "done"
    with sessions() as session:
        state = session.get(AlertState, "f1")
        assert state is not None and state.silenced_by == []
        [incident] = session.scalars(sa.select(Incident)).all()
        assert incident.services == ["cache-redis"]
    engine.dispose()


def test_quiet_flapping_incident_is_closed_once_and_that_notifies(db_url: str) -> None:
    from tests.notify.test_routing_stage import ROUTING

    settings = make_settings(db_url, correlation={"flap_window_seconds": 60}, routing=ROUTING)
    engine = create_db_engine(db_url)
    sessions = make_session_factory(engine)
    now = utcnow()
    with sessions.begin() as session:
        session.add(_alert("f2", "svc", status="resolved", minutes_ago=10))
        incident = Incident(
            status="open",
            severity="P1",
            title="t",
            opened_at=now - timedelta(minutes=10),
            updated_at=now,
            first_alert_at=now - timedelta(minutes=10),
            last_alert_at=now - timedelta(minutes=10),
            services=["svc"],
            flapping=True,
        )
        session.add(incident)
        session.flush()
        from incidents.models import IncidentAlert

        session.add(
            IncidentAlert(
                incident_id=stored_id(incident),
                fingerprint="f2",
                service="svc",
                severity="P1",
                starts_at=now - timedelta(minutes=10),
                status="resolved",
                joined_at=now,
                joined_because={},
            )
        )
        session.add(
            AlertState(
                fingerprint="f2",
                last_status="resolved",
                last_state_at=now - timedelta(minutes=9),
                transitions=[],
                flapping=True,
                updated_at=now,
            )
        )
    maintain(sessions, settings)
    maintain(sessions, settings)
    with sessions() as session:
        stored = session.get(Incident, incident.id)
        assert stored is not None and stored.status == "resolved"
        kinds = session.scalars(
            sa.select(col(TimelineEntry.kind)).where(
                col(TimelineEntry.incident_id) == stored_id(incident)
            )
        ).all()
        assert kinds == ["resolved"]
        # People are told it is over, once, like any other resolve.
        sent = session.execute(
            sa.text("SELECT event, channel, target FROM notifications WHERE incident_id = :i"),
            {"i": stored_id(incident)},
        ).all()
        assert [tuple(r) for r in sent] == [("resolved", "slack", "#incidents")]
    engine.dispose()
