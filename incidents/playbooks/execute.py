"""Run one playbook run, one step at a time, under a lease.

A step's start is committed before it acts and its outcome after, so a worker that dies
leaves a record the next one can trust:

- finished steps are never run again;
- a step left `running` was in flight: it is run again only when its action says that
  is safe (`idempotent`); otherwise the run stops as `interrupted`, saying so;
- a step that needs approval stops the run in `waiting_approval` until someone decides
  (see `approval`);
- a dry run renders every step and records what it would do, acting on nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.db import session_scope, utcnow
from incidents.pipeline.stages import TaskRef
from incidents.vocab import TimelineKind

from . import approval, store, templates
from .actions import get as get_action
from .actions.base import ActionContext, ActionError, ActionResult
from .context import incident_context, template_context
from .document import COMPENSATION_OFFSET, Compensation, Playbook, Step
from .lease import LeaseKeeper, worker_id
from .models import RunStatus, StepStatus
from .record import Recorder, steps_view

log = logging.getLogger(__name__)


class Executor:
    """Runs playbook runs for one worker."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_commit: Callable[[list[TaskRef]], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.sleep = sleep
        self.on_commit = on_commit

    def run(self, run_id: int) -> str:
        """Run what is left of a run; return its status afterwards ('skipped' when
        another worker holds it or it is not runnable)."""
        owner = worker_id()
        lease = self.settings.playbooks.lease_seconds
        with session_scope(self.sessions) as session:
            if not store.claim(session, run_id, owner, utcnow(), lease):
                return "skipped"
        with LeaseKeeper(self.sessions, run_id, owner, lease) as keeper:
            while True:
                status = self._next(run_id, owner, keeper)
                if status is not None:
                    return status

    def _next(self, run_id: int, owner: str, keeper: LeaseKeeper) -> str | None:
        """Take the run one step further; its final status once it stops, else None."""
        with session_scope(self.sessions) as session:
            run = store.load_run(session, run_id)
            if run is None:
                return "missing"
            if run["status"] != RunStatus.RUNNING or run["lease_owner"] != owner or keeper.lost:
                return str(run["status"])
            rows = store.load_steps(session, run_id)
            playbook = Playbook.model_validate(run["playbook"])
            recorder = Recorder(self.settings.playbooks, run)
            now = utcnow()
            todo = next((r for r in rows if r["position"] < COMPENSATION_OFFSET and _open(r)), None)
            if todo is None:
                return self._finish(session, run, rows, recorder, now)
            position = todo["position"]
            step = playbook.steps[position]
            context = self._context(session, run, rows)
            if todo["status"] == StepStatus.RUNNING and not self._repeatable(step, context):
                return self._interrupted(session, run, step, position, recorder, now)
            if run["dry_run"]:
                # Earlier results are unknown in a dry run: record conditions, act on none.
                _dry(session, playbook, position, context, recorder, now)
                return None
            if step.if_ is not None and not _condition(step, context, recorder, position, session):
                return None
            if (
                not run["dry_run"]
                and playbook.needs_approval(position)
                and position not in (run["approved_steps"] or [])
            ):
                handed = approval.request(session, self.settings, run, step, position, now)
                self._hand_on_later(session, handed)
                return str(RunStatus.WAITING_APPROVAL)
            store.set_step(
                session,
                run_id,
                position,
                status=StepStatus.RUNNING,
                started_at=now,
                attempts=todo["attempts"] + 1,
            )
        # Committed: the step is marked in flight before it acts.
        ok = self._act(
            run, step.name, step.action, step.params, step.timeout, step, position, context
        )
        if ok or step.on_failure == "continue":
            return None
        with session_scope(self.sessions) as session:
            if step.compensate is not None:
                self._compensate(run, step.compensate, position, session)
            return self._stop(session, run, Recorder(self.settings.playbooks, run), step.name)

    def _act(
        self,
        run: dict[str, Any],
        name: str,
        action_name: str,
        raw: dict[str, Any],
        timeout: str | None,
        step: Step | None,
        position: int,
        context: dict[str, Any],
    ) -> bool:
        """Render, validate and run one step with its retries; record the outcome."""
        recorder = Recorder(self.settings.playbooks, run)
        action = get_action(action_name)
        attempts = step.retries.attempts if step is not None else 1
        backoff = _seconds(step.retries.backoff) if step is not None else 0.0
        cap = _seconds(step.retries.max_backoff) if step is not None else 0.0
        seconds = (
            _seconds(timeout) if timeout else self.settings.playbooks.default_step_timeout_seconds
        )
        params: Any = None
        actx = self._action_context(run, name, seconds)
        error: ActionError | None = None
        outcome: ActionResult | None = None
        try:
            if action is None:
                raise ActionError(f"unknown action {action_name!r}")
            params = templates.render(raw, {**context, "secrets": self._secrets()})
            model = action.params.model_validate(params)
            for attempt in range(1, attempts + 1):
                try:
                    outcome = action.run(model, actx)
                    error = None
                    break
                except ActionError as exc:
                    error = exc
                    if not exc.retryable or attempt == attempts:
                        break
                    self.sleep(min(cap, backoff * 2 ** (attempt - 1)))
                    with session_scope(self.sessions) as session:
                        store.set_step(session, run["id"], position, attempts=attempt + 1)
        except templates.TemplateProblem as exc:
            error = ActionError(str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            error = ActionError(f"parameter {where}: {first['msg']}")
        except Exception as exc:
            log.exception("playbook action %s failed unexpectedly", action_name)
            error = ActionError(f"{type(exc).__name__}: {exc}")
        if actx.handed_on and self.on_commit is not None:
            self.on_commit(list(actx.handed_on))
        with session_scope(self.sessions) as session:
            now = utcnow()
            if error is None and outcome is not None:
                recorder.step_done(
                    session, position, name, action_name, StepStatus.SUCCEEDED, now,
                    params=params, result=outcome.result, output=outcome.output,
                    message=action.describe(model) if action is not None else name,
                )  # fmt: skip
                return True
            assert error is not None
            recorder.step_done(
                session, position, name, action_name, StepStatus.FAILED, now,
                params=params, result=error.result, output=error.output, error=error.message,
                message=error.message,
            )  # fmt: skip
            return False

    def _compensate(
        self, run: dict[str, Any], comp: Compensation, position: int, session: Session
    ) -> None:
        at = COMPENSATION_OFFSET + position
        store.add_step(session, run["id"], at, comp.name, comp.action)
        store.set_step(session, run["id"], at, status=StepStatus.RUNNING, started_at=utcnow())
        context = self._context(session, run, store.load_steps(session, run["id"]))
        session.commit()
        self._act(run, comp.name, comp.action, comp.params, comp.timeout, None, at, context)

    def _action_context(self, run: dict[str, Any], name: str, seconds: float) -> ActionContext:
        handed: list[Any] = []
        context = ActionContext(
            settings=self.settings,
            run_id=run["id"],
            incident_id=run["incident_id"],
            step=name,
            timeout=seconds,
            actor=f"playbook:{run['playbook_id']}",
            sessions=self.sessions,
            now=utcnow,
            sleep=self.sleep,
            handed_on=handed,
            redact=lambda text: str(templates.redact(text, self._secrets().values())),
        )
        return context

    def _context(
        self, session: Session, run: dict[str, Any], rows: list[dict[str, Any]]
    ) -> dict[str, Any]:
        views = incident_context(session, [run["incident_id"]], self.settings.public_url)
        view = views.get(run["incident_id"]) or {"incident": {}, "alerts": [], "facts": {}}
        finished = [r for r in rows if not _open(r)]
        return {
            **template_context(view, (run["context"] or {}).get("fingerprint")),
            "steps": steps_view(finished),
            "run": {
                "id": run["id"],
                "playbook": run["playbook_id"],
                "dry_run": run["dry_run"],
                "trigger": run["trigger"],
            },
        }

    def _secrets(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.settings.playbooks.secrets.items()}

    def _repeatable(self, step: Step, context: dict[str, Any]) -> bool:
        action = get_action(step.action)
        if action is None:
            return False
        try:
            rendered = templates.render(step.params, {**context, "secrets": self._secrets()})
            return bool(action.idempotent(action.params.model_validate(rendered)))
        except (templates.TemplateProblem, ValidationError):
            return False

    def _interrupted(
        self,
        session: Session,
        run: dict[str, Any],
        step: Step,
        position: int,
        recorder: Recorder,
        now: datetime,
    ) -> str:
        message = (
            f"step {step.name} was in flight when its worker stopped, and {step.action} with "
            "these parameters is not safe to repeat: check by hand whether it took effect"
        )
        recorder.step_done(
            session, position, step.name, step.action, StepStatus.INTERRUPTED, now,
            error=message, message=message,
        )  # fmt: skip
        return self._end(session, run, recorder, RunStatus.INTERRUPTED, message, now)

    def _stop(self, session: Session, run: dict[str, Any], recorder: Recorder, name: str) -> str:
        return self._end(session, run, recorder, RunStatus.FAILED, f"step {name} failed", utcnow())

    def _finish(
        self,
        session: Session,
        run: dict[str, Any],
        rows: list[dict[str, Any]],
        recorder: Recorder,
        now: datetime,
    ) -> str:
        failed = [r["name"] for r in rows if r["status"] == StepStatus.FAILED]
        note = f"; failed and continued: {', '.join(failed)}" if failed else ""
        verb = "dry run finished" if run["dry_run"] else "finished"
        return self._end(session, run, recorder, RunStatus.SUCCEEDED, f"{verb}{note}", now)

    def _end(
        self,
        session: Session,
        run: dict[str, Any],
        recorder: Recorder,
        status: RunStatus,
        message: str,
        now: datetime,
    ) -> str:
        current = store.load_run(session, run["id"], lock=True)
        if current is not None and current["status"] != RunStatus.RUNNING:
            # Cancelled while its last step was in flight: that word stands.
            return str(current["status"])
        store.set_run(
            session,
            run["id"],
            status=status,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_until=None,
            error=None if status == RunStatus.SUCCEEDED else message,
        )
        # Steps the run never reached are skipped, so the record has no open step.
        for row in store.load_steps(session, run["id"]):
            if row["status"] == StepStatus.PENDING:
                store.set_step(session, run["id"], row["position"], status=StepStatus.SKIPPED)
        recorder.entry(
            session,
            TimelineKind.PLAYBOOK_RUN,
            f"playbook {run['playbook_id']}: run {run['id']} {status}: {message}",
            now,
            {"status": str(status)},
        )
        return str(status)

    def _hand_on_later(self, session: Session, tasks: list[TaskRef]) -> None:
        if tasks and self.on_commit is not None:
            session.commit()
            self.on_commit(tasks)


def _open(row: dict[str, Any]) -> bool:
    return row["status"] in (StepStatus.PENDING, StepStatus.RUNNING)


def _seconds(text: str) -> float:
    from incidents.notify.routing_config import parse_duration

    return parse_duration(text).total_seconds()


def _condition(
    step: Step, context: dict[str, Any], recorder: Recorder, position: int, session: Session
) -> bool:
    """Whether the step's `if` holds; a false or failing condition skips it (recorded)."""
    assert step.if_ is not None
    try:
        if templates.evaluate(step.if_, context):
            return True
        why = f"condition {step.if_!r} is false"
    except templates.TemplateProblem as exc:
        why = f"condition {step.if_!r} could not be evaluated: {exc}"
    recorder.step_done(
        session, position, step.name, step.action, StepStatus.SKIPPED, utcnow(), message=why
    )
    return False


def _dry(
    session: Session,
    playbook: Playbook,
    position: int,
    context: dict[str, Any],
    recorder: Recorder,
    now: datetime,
) -> None:
    """Record what the step would do; secrets stay out of the rendering."""
    step = playbook.steps[position]
    action = get_action(step.action)
    shown = {**context, "secrets": dict.fromkeys(recorder.secret_names, templates.REDACTED)}
    try:
        params = templates.render(step.params, shown)
        model = action.params.model_validate(params) if action is not None else None
        what = action.describe(model) if action is not None else step.action
        result: dict[str, Any] = {"would": what}
        if step.if_:
            result["if"] = step.if_
        if playbook.needs_approval(position):
            result["approval"] = "required"
        if step.compensate is not None:
            result["compensate"] = step.compensate.action
        recorder.step_done(
            session, position, step.name, step.action, StepStatus.WOULD_RUN, now,
            params=params, result=result, message=f"would {what}",
        )  # fmt: skip
    except (templates.TemplateProblem, ValidationError) as exc:
        recorder.step_done(
            session, position, step.name, step.action, StepStatus.FAILED, now,
            error=str(exc), message=f"would fail: {exc}",
        )  # fmt: skip
