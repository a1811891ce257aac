"""`silence.create`: silence the incident's alerts for a bounded time while a fix settles.

One silence per distinct alert name of the incident (its firing alerts), matching the
name and, where the alert has one, its service label, unless `matchers` names exactly
what to silence. Ids are derived from the run and step, so a repeated step creates no
second silence.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import Field, field_validator
from sqlalchemy import select

from incidents.db import session_scope, utcnow
from incidents.exceptions import ValidationFailed
from incidents.models import ALERTS, LINKS, Silence
from incidents.notify.routing_config import Duration, parse_duration
from incidents.routing.matchers import parse_matchers
from incidents.vocab import MemberStatus

from . import register
from .base import ActionContext, ActionError, ActionResult, Params

_NAMESPACE = uuid.UUID("6f1e2f4e-7d0c-4b6e-9a39-0c9b8f0f6a11")


class SilenceParams(Params):
    """How long, why, and optionally exactly what."""

    duration: Duration
    comment: str = Field(default="silenced by a remediation playbook", max_length=1000)
    matchers: list[str] | None = Field(default=None, max_length=20)

    @field_validator("matchers")
    @classmethod
    def _parse(cls, value: list[str] | None) -> list[str] | None:
        for text in value or []:
            try:
                parse_matchers(text, where="matchers")
            except ValidationFailed as exc:
                raise ValueError(exc.message) from None
        return value


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CreateSilence:
    """Silence the incident's alerts."""

    name: ClassVar[str] = "silence.create"
    params: ClassVar[type[Params]] = SilenceParams

    def idempotent(self, params: Any) -> bool:
        """Its ids are derived from the run and step: a repeat finds them made."""
        return True

    def run(self, params: Any, ctx: ActionContext) -> ActionResult:
        """Create the silences (or find them made)."""
        seconds = parse_duration(params.duration).total_seconds()
        limit = ctx.settings.playbooks.max_silence_seconds
        if seconds <= 0 or seconds > limit:
            raise ActionError(
                f"duration {params.duration} is outside (0, {limit:g}s] "
                "(playbooks.max_silence_seconds)"
            )
        if ctx.sessions is None:
            raise ActionError("this action needs the database")
        now = (ctx.now or utcnow)()
        made: list[str] = []
        with session_scope(ctx.sessions) as session:
            sets = [[str(m) for m in parse_matchers(t)] for t in params.matchers or []]
            if not sets:
                sets = self._from_alerts(session, ctx.incident_id)
            if not sets:
                raise ActionError("the incident has no firing alert to silence")
            for matchers in sets:
                key = f"{ctx.run_id}:{ctx.step}:{','.join(matchers)}"
                silence_id = str(uuid.uuid5(_NAMESPACE, key))
                if session.get(Silence, silence_id) is None:
                    session.add(
                        Silence(
                            id=silence_id,
                            matchers=matchers,
                            starts_at=now,
                            ends_at=now + timedelta(seconds=seconds),
                            created_by=ctx.actor,
                            comment=ctx.redact(f"{params.comment} (incident {ctx.incident_id})"),
                            created_at=now,
                            updated_at=now,
                        )
                    )
                made.append(silence_id)
        return ActionResult({"silences": made, "ends_in_seconds": seconds})

    @staticmethod
    def _from_alerts(session: Any, incident_id: int) -> list[list[str]]:
        rows = session.execute(
            select(ALERTS.c.labels)
            .join(LINKS, LINKS.c.fingerprint == ALERTS.c.fingerprint)
            .where(LINKS.c.incident_id == incident_id, LINKS.c.status != MemberStatus.MUTED)
            .where(ALERTS.c.status == "firing")
        )
        seen: dict[tuple[str, str | None], list[str]] = {}
        for (labels,) in rows:
            name = labels.get("alertname")
            if not name:
                continue
            service = labels.get("service")
            matchers = [f"alertname={_quote(name)}"]
            if service:
                matchers.append(f"service={_quote(service)}")
            seen.setdefault((name, service), matchers)
        return [seen[k] for k in sorted(seen, key=lambda k: (k[0], k[1] or ""))]

    def describe(self, params: Any) -> str:
        """What it would silence."""
        what = ", ".join(params.matchers) if params.matchers else "the incident's alerts"
        return f"silence {what} for {params.duration}"


register(CreateSilence())
