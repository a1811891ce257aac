"""The playbook stage: incident events in, playbook runs out, in the job's transaction.

It runs last, after routing. For each event a playbook has a trigger for, it matches the
trigger's matchers against the incident's alerts (the alert that fired, for
`alert_firing`), evaluates the playbook's conditions, checks the policy's limits under the
playbook's lock, and writes a run. The run is handed to the playbook worker after commit.
No action runs here: a stage makes no network call.
"""

from __future__ import annotations

import logging
from typing import Any

from incidents import timeline
from incidents.config import Settings
from incidents.metrics import PLAYBOOK_RUNS_REFUSED
from incidents.pipeline.stages import IncidentEvent, RunContext, TaskRef
from incidents.tasks import PLAYBOOK_TASK
from incidents.vocab import TimelineKind

from . import store, templates
from .catalog import Catalog, Loaded, catalog_of
from .context import incident_context, label_sets, template_context

log = logging.getLogger(__name__)

# The timeline kinds that stand for each trigger event.
EVENT_OF: dict[TimelineKind, tuple[str, ...]] = {
    TimelineKind.OPENED: ("incident_opened", "alert_firing"),
    TimelineKind.SEVERITY_RAISED: ("severity_raised",),
    TimelineKind.ALERT_JOINED: ("alert_firing",),
    TimelineKind.REOPENED: ("alert_firing",),
    TimelineKind.RESOLVED: ("resolved",),
}


def fingerprints_of(event: IncidentEvent) -> list[str] | None:
    """The alerts an event is about (None: the whole incident)."""
    data = event.data or {}
    if "fingerprint" in data:
        return [str(data["fingerprint"])]
    if "fingerprints" in data:
        return [str(f) for f in data["fingerprints"]]
    return None


class PlaybookStage:
    """Writes the playbook runs that the job's incident events trigger."""

    name = "playbooks"

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self._settings = settings
        self._catalog = catalog if catalog is not None else catalog_of(settings.playbooks)

    def run(self, ctx: RunContext) -> None:
        """Create the runs this slice's events trigger."""
        if not len(self._catalog):
            return
        wanted = [
            (event, name)
            for event in ctx.events
            if event.entry_id is not None
            for name in EVENT_OF.get(event.kind, ())
            if self._catalog.for_event(name)
        ]
        if not wanted:
            return
        views = incident_context(
            ctx.session, sorted({e.incident_id for e, _ in wanted}), self._settings.public_url
        )
        for event, name in wanted:
            view = views.get(event.incident_id)
            if view is None:
                continue
            for loaded in self._catalog.for_event(name):
                self._consider(ctx, loaded, event, name, view)

    def _consider(
        self,
        ctx: RunContext,
        loaded: Loaded,
        event: IncidentEvent,
        name: str,
        view: dict[str, Any],
    ) -> None:
        scope = fingerprints_of(event) if name == "alert_firing" else None
        if not loaded.triggered_by(name, label_sets(view, scope)):
            return
        playbook = loaded.playbook
        first = scope[0] if scope else None
        if playbook.conditions:
            context = template_context(view, first)
            try:
                if not all(templates.evaluate(c, context) for c in playbook.conditions):
                    return
            except templates.TemplateProblem as exc:
                log.warning("playbook %s: a condition failed: %s", playbook.id, exc)
                return
        key = f"entry:{event.entry_id}"
        refused = store.refusal(ctx.session, playbook, event.incident_id, ctx.now)
        if refused is not None:
            PLAYBOOK_RUNS_REFUSED.labels(playbook.id, refused.limit).inc()
            if refused.limit != "max_runs_per_incident":
                # Repeats for one incident are expected; a cap or cooldown is news.
                timeline.write(
                    ctx.session,
                    [
                        timeline.entry(
                            event.incident_id,
                            TimelineKind.PLAYBOOK_RUN,
                            f"playbook {playbook.id} was not run: {refused.message}",
                            at=ctx.now,
                            data={"playbook": playbook.id, "refused": refused.limit},
                        )
                    ],
                )
            return
        run_id = store.create_run(
            ctx.session,
            playbook,
            event.incident_id,
            trigger=name,
            trigger_key=key,
            dry_run=playbook.policy.dry_run,
            actor=f"playbook:{playbook.id}",
            now=ctx.now,
            context={"entry_id": event.entry_id, "fingerprint": first, "event": name},
        )
        if run_id is not None:
            ctx.after_commit.append(TaskRef(PLAYBOOK_TASK, {"run_id": run_id}))
