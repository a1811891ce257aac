"""Actions on the incident itself: annotate, set a status, resolve, and notify its channels.

They go through the same lifecycle functions as the API and Slack buttons, in their own
transaction, recorded as done by `playbook:<id>`; what they hand on (the notifications
a state change calls for) is passed to the worker after commit. Doing one again is
harmless: an incident already in the asked state is a success, not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field
from sqlalchemy.orm import Session

from incidents import timeline
from incidents.db import session_scope, utcnow
from incidents.exceptions import Conflict, NotFound
from incidents.pipeline import actions
from incidents.pipeline.actions import Actor
from incidents.pipeline.stages import IncidentEvent
from incidents.vocab import IncidentState, TimelineKind

from . import register
from .base import ActionContext, ActionError, ActionResult, Params

Act = Callable[[Session, int, Actor, datetime], list[IncidentEvent]]


def _apply(ctx: ActionContext, act: Act) -> dict[str, Any]:
    """Run a lifecycle function for the incident and route what it caused."""
    from incidents.pipeline.runner import route_events

    if ctx.sessions is None:
        raise ActionError("this action needs the database")
    now = (ctx.now or utcnow)()
    actor = Actor(ctx.actor, "playbook")
    try:
        with session_scope(ctx.sessions) as session:
            events = act(session, ctx.incident_id, actor, now)
            ctx.handed_on.extend(route_events(session, ctx.settings, events, now))
    except Conflict as exc:
        return {"changed": False, "reason": exc.message}
    except NotFound as exc:
        raise ActionError(exc.message) from None
    return {"changed": True}


def _said(ctx: ActionContext, params: Any) -> str | None:
    message: str | None = params.message
    return ctx.redact(message) if message else message


class MessageParams(Params):
    """A message for the timeline or the channels."""

    message: str = Field(min_length=1, max_length=4000)


class Annotate:
    """`incident.annotate`: a note on the incident's timeline (no notification)."""

    name: ClassVar[str] = "incident.annotate"
    params: ClassVar[type[Params]] = MessageParams

    def idempotent(self, params: Any) -> bool:
        """A repeated note only repeats a line of text."""
        return True

    def run(self, params: Any, ctx: ActionContext) -> ActionResult:
        """Write the note."""
        if ctx.sessions is None:
            raise ActionError("this action needs the database")
        with session_scope(ctx.sessions) as session:
            actions.load(session, ctx.incident_id)  # 404 -> ActionError below
            timeline.write(
                session,
                [
                    timeline.entry(
                        ctx.incident_id,
                        TimelineKind.NOTE,
                        ctx.redact(params.message),
                        at=(ctx.now or utcnow)(),
                        actor=ctx.actor,
                        data={"via": "playbook"},
                    )
                ],
            )
        return ActionResult({"noted": True})

    def describe(self, params: Any) -> str:
        """What it would write."""
        return f"note on the timeline: {params.message[:200]}"


class StatusParams(Params):
    """The working status to set, and why."""

    status: Literal["investigating", "identified", "monitoring"]
    message: str | None = Field(default=None, max_length=4000)


class SetStatus:
    """`incident.set_status`: investigating, identified or monitoring."""

    name: ClassVar[str] = "incident.set_status"
    params: ClassVar[type[Params]] = StatusParams

    def idempotent(self, params: Any) -> bool:
        """Setting a status it already has changes nothing."""
        return True

    def run(self, params: Any, ctx: ActionContext) -> ActionResult:
        """Set the status, as a person would through the API."""
        status = IncidentState(params.status)
        return ActionResult(
            _apply(
                ctx,
                lambda s, i, a, now: actions.set_status(s, i, status, a, _said(ctx, params), now),
            )
        )

    def describe(self, params: Any) -> str:
        """What it would set."""
        return f"set the incident's status to {params.status}"


class OptionalMessage(Params):
    """Why (optional)."""

    message: str | None = Field(default=None, max_length=4000)


class Resolve:
    """`incident.resolve`: resolve the incident, stop its escalation, tell its channels."""

    name: ClassVar[str] = "incident.resolve"
    params: ClassVar[type[Params]] = OptionalMessage

    def idempotent(self, params: Any) -> bool:
        """Resolving a resolved incident changes nothing."""
        return True

    def run(self, params: Any, ctx: ActionContext) -> ActionResult:
        """Resolve it."""
        return ActionResult(
            _apply(ctx, lambda s, i, a, now: actions.resolve(s, i, a, _said(ctx, params), now))
        )

    def describe(self, params: Any) -> str:
        """What it would do."""
        return "resolve the incident"


class Notify:
    """`notify`: post a message to the incident's channels (Slack thread, email thread,
    webhooks), as a note does."""

    name: ClassVar[str] = "notify"
    params: ClassVar[type[Params]] = MessageParams

    def idempotent(self, params: Any) -> bool:
        """A second post would repeat the message to people: not safe."""
        return False

    def run(self, params: Any, ctx: ActionContext) -> ActionResult:
        """Post it."""
        return ActionResult(
            _apply(ctx, lambda s, i, a, now: actions.add_note(s, i, a, _said(ctx, params), now))
        )

    def describe(self, params: Any) -> str:
        """What it would post."""
        return f"post to the incident's channels: {params.message[:200]}"


for _action in (Annotate(), SetStatus(), Resolve(), Notify()):
    register(_action)
