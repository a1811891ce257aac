"""What a step leaves behind: its row, its timeline entry and its metric, redacted.

Everything recorded passes through `Recorder.clean`: secret values are replaced by
[redacted], text is cut to the configured size, and results must be plain JSON.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from incidents import timeline
from incidents.metrics import PLAYBOOK_STEPS
from incidents.vocab import TimelineKind

from . import store, templates
from .models import StepStatus
from .settings import PlaybookSettings

# The most of a result kept in a timeline entry's data (the step row keeps it all).
TIMELINE_RESULT_BYTES = 2048


class Recorder:
    """Writes step and run outcomes for one run, with secrets removed."""

    def __init__(self, settings: PlaybookSettings, run: dict[str, Any]) -> None:
        self.secrets = [s.get_secret_value() for s in settings.secrets.values()]
        self.secret_names = sorted(settings.secrets)
        self.limit = settings.max_output_bytes
        self.run = run

    def clean(self, value: Any) -> Any:
        """The value, redacted, as plain JSON data."""
        redacted = templates.redact(value, self.secrets)
        try:
            return json.loads(json.dumps(redacted, default=str))
        except (TypeError, ValueError):
            return {"unrecordable": type(value).__name__}

    def text(self, value: str | None) -> str | None:
        """Text redacted and cut to the output limit."""
        if value is None:
            return None
        cleaned = str(templates.redact(value, self.secrets))
        data = cleaned.encode("utf-8", "replace")
        if len(data) <= self.limit:
            return cleaned
        return data[: self.limit].decode("utf-8", "ignore") + "\n[output cut]"

    def step_done(
        self,
        session: Session,
        position: int,
        name: str,
        action: str,
        status: StepStatus,
        now: datetime,
        *,
        params: Any = None,
        result: dict[str, Any] | None = None,
        output: str | None = None,
        error: str | None = None,
        message: str,
    ) -> None:
        """Record a finished (or skipped) step and put it on the incident's timeline."""
        clean_result = self.clean(result or {})
        clean_error = self.text(error)
        values: dict[str, Any] = {
            "status": status,
            "finished_at": now,
            "result": clean_result,
            "output": self.text(output),
            "error": clean_error,
        }
        if params is not None:
            values["params"] = self.clean(params)
        store.set_step(session, self.run["id"], position, **values)
        PLAYBOOK_STEPS.labels(action, str(status)).inc()
        shown = clean_result
        if len(json.dumps(shown)) > TIMELINE_RESULT_BYTES:
            shown = {"cut": True}
        self.entry(
            session,
            TimelineKind.PLAYBOOK_STEP,
            f"playbook {self.run['playbook_id']} step {name} ({action}) {status}: "
            f"{self.text(message)}",
            now,
            {
                "step": name,
                "position": position,
                "action": action,
                "status": str(status),
                "result": shown,
                "error": clean_error,
            },
        )

    def entry(
        self, session: Session, kind: TimelineKind, message: str, now: datetime, data: Any
    ) -> None:
        """A timeline entry about this run."""
        timeline.write(
            session,
            [
                timeline.entry(
                    self.run["incident_id"],
                    kind,
                    str(self.text(message)),
                    at=now,
                    actor=f"playbook:{self.run['playbook_id']}",
                    data={
                        "run_id": self.run["id"],
                        "playbook": self.run["playbook_id"],
                        "dry_run": self.run["dry_run"],
                        **self.clean(data),
                    },
                )
            ],
        )


def steps_view(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`steps` as templates see it: each finished step's outcome by name."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        status = row["status"]
        out[row["name"]] = {
            "status": status,
            "ok": status == StepStatus.SUCCEEDED,
            "failed": status in (StepStatus.FAILED, StepStatus.INTERRUPTED),
            "skipped": status == StepStatus.SKIPPED,
            "result": row["result"] or {},
            "output": row["output"] or "",
            "error": row["error"] or "",
        }
    return out
