"""What an action is: a name, a typed parameter model, whether it is safe to repeat, and
a `run` that acts (or, in a dry run, `describe` that says what it would do).

An action never runs a shell and never reads a secret from an alert: the runner renders
the step's templates (with `secrets` from the settings) into the parameter model, and the
action receives only that model and an `ActionContext`.

Errors an action raises::

    ActionError            the step failed; `retryable` says whether a retry may help
    └── ActionTimeout      the step ran past its timeout (retryable)

Anything else an action raises is a bug; the runner records it as a failed step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from incidents.config import Settings


class ActionError(Exception):
    """A step that failed. `result` is kept as the step's result (e.g. the status seen)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        result: dict[str, Any] | None = None,
        output: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.result = result or {}
        self.output = output


class ActionTimeout(ActionError):
    """The step did not finish within its timeout."""

    def __init__(self, message: str, *, result: dict[str, Any] | None = None) -> None:
        super().__init__(message, retryable=True, result=result)


class Params(BaseModel):
    """Base of every action's parameter model: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ActionResult:
    """What a step produced: `result` is structured data later steps read as
    `steps.<name>.result`; `output` is free text (stdout, a response body)."""

    result: dict[str, Any] = field(default_factory=dict)
    output: str = ""


@dataclass
class ActionContext:
    """What an action may use besides its parameters."""

    settings: Settings
    run_id: int
    incident_id: int
    step: str
    # Seconds this attempt may take; an action passes it on to its client calls.
    timeout: float
    # Who acts, as the timeline records it: "playbook:<id>".
    actor: str
    # A session factory for the actions that act on incidents (annotate, resolve, ...).
    sessions: sessionmaker[Session] | None = None
    now: Callable[[], datetime] | None = None
    sleep: Callable[[float], None] = time.sleep
    # Tasks the action's own transaction handed on after commit (notifications).
    handed_on: list[Any] = field(default_factory=list)
    # Removes secret values from text: an action that writes its parameters where people
    # read them (the timeline, a chat message) passes them through this first.
    redact: Callable[[str], str] = str


class Action(Protocol):
    """One kind of step, registered by `name`."""

    name: ClassVar[str]
    params: ClassVar[type[Params]]

    def idempotent(self, params: Any) -> bool:
        """True when running it twice does what running it once does. A step that was in
        flight when its worker died is retried only then; otherwise the run stops."""
        ...

    def run(self, params: Any, ctx: ActionContext) -> ActionResult:
        """Act; raise ActionError (or ActionTimeout) when the step failed."""
        ...

    def describe(self, params: Any) -> str:
        """One line saying what `run` would do, for dry runs and the timeline."""
        ...
