"""A run whose worker died resumes without repeating finished steps; a step that was in
flight runs again only when its action is safe to repeat."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from incidents.api.deps import ServiceState
from incidents.db import session_scope, utcnow
from incidents.playbooks import manual, store
from incidents.playbooks.catalog import catalog_of
from incidents.playbooks.execute import Executor
from incidents.playbooks.models import RunStatus, StepStatus
from tests.api.incident_pipe import Pipeline, alert, recent

TWO = """
id: two
description: a note, then {second}
steps:
  - name: first
    action: incident.annotate
    params: {{message: "first note"}}
  - name: second
    action: {second}
    params: {{message: "second"}}
"""


def _died_during_second(pipe: Pipeline, second: str) -> tuple[ServiceState, int]:
    """A run whose first step finished and whose second was in flight when its worker
    died (its lease lapsed)."""
    pipe.post(alert("api-gateway", "Down", recent(1), "P1"))
    (incident,) = pipe.incidents()
    state: ServiceState = pipe.client.app.state.service  # type: ignore[attr-defined]
    loaded = catalog_of(state.settings.playbooks).get("two")
    assert loaded is not None
    now = utcnow()
    with session_scope(state.sessions) as session:
        run_id = manual.start(session, loaded, incident["id"], dry_run=False, actor="t")
        store.set_run(
            session, run_id, status=RunStatus.RUNNING, lease_owner="dead-worker",
            lease_until=now - timedelta(seconds=1), started_at=now,
        )  # fmt: skip
        store.set_step(
            session, run_id, 0, status=StepStatus.SUCCEEDED, started_at=now, finished_at=now,
            result={"noted": True}, attempts=1,
        )  # fmt: skip
        store.set_step(session, run_id, 1, status=StepStatus.RUNNING, started_at=now, attempts=1)
    return state, run_id


def _notes(pipe: Pipeline, incident_id: int) -> list[str]:
    detail = pipe.incident(incident_id)
    return [e["message"] for e in detail["timeline"] if e["kind"] == "note"]


def test_a_repeatable_step_in_flight_is_run_again_and_nothing_before_it(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    pipe = playbook_pipe(
        {"playbooks": {"sweep_interval_seconds": 60}}, two=TWO.format(second="incident.annotate")
    )
    state, run_id = _died_during_second(pipe, "incident.annotate")
    assert Executor(state.sessions, state.settings).run(run_id) == "succeeded"
    with state.sessions() as session:
        view = manual.run_view(session, run_id)
    assert view is not None
    assert [(s["status"], s["attempts"]) for s in view["steps"]] == [
        ("succeeded", 1),
        ("succeeded", 2),  # the second try of the step that was in flight
    ]
    incident_id = view["incident_id"]
    assert _notes(pipe, incident_id) == ["second"]  # the first note was never written again


def test_a_step_not_safe_to_repeat_stops_the_run_and_says_so(
    playbook_pipe: Callable[..., Pipeline],
) -> None:
    pipe = playbook_pipe(
        {"playbooks": {"sweep_interval_seconds": 60}}, two=TWO.format(second="notify")
    )
    state, run_id = _died_during_second(pipe, "notify")
    assert Executor(state.sessions, state.settings).run(run_id) == "interrupted"
    with state.sessions() as session:
        view = manual.run_view(session, run_id)
    assert view is not None
    assert [s["status"] for s in view["steps"]] == ["succeeded", "interrupted"]
    assert "not safe to repeat" in (view["error"] or "")
    assert _notes(pipe, view["incident_id"]) == []


def test_a_run_held_by_a_live_worker_is_not_taken(playbook_pipe: Callable[..., Pipeline]) -> None:
    pipe = playbook_pipe(
        {"playbooks": {"sweep_interval_seconds": 60}}, two=TWO.format(second="incident.annotate")
    )
    state, run_id = _died_during_second(pipe, "incident.annotate")
    with session_scope(state.sessions) as session:
        store.set_run(session, run_id, lease_until=utcnow() + timedelta(seconds=30))
    assert Executor(state.sessions, state.settings).run(run_id) == "skipped"
