"""Merging incidents by hand (`POST /api/v1/incidents/{id}/merge`): the same fold the
correlation does, under the same lock, so members, services, severity, what was paged
and the timeline move exactly as they do when the rule merges two incidents."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.config import Settings
from incidents.correlation.index import MemoryIndex
from incidents.correlation.rule import rule_for
from incidents.correlation.store import current_graph
from incidents.exceptions import Conflict, NotFound
from incidents.models import INCIDENTS, Incident
from incidents.pipeline.absorb import merge_into
from incidents.pipeline.actions import Actor, load
from incidents.pipeline.finish import finish_job
from incidents.pipeline.incident_state import Job
from incidents.pipeline.stages import IncidentEvent
from incidents.vocab import IncidentStatus


def merge(
    session: Session,
    settings: Settings,
    target_id: int,
    sources: list[int],
    actor: Actor,
    message: str | None,
    now: datetime,
) -> list[IncidentEvent]:
    """Fold `sources` into `target_id`; every one must be open and not the target."""
    target = load(session, target_id, correlation=True)
    if target.status != IncidentStatus.OPEN:
        raise Conflict(
            f"cannot merge into incident {target_id}: it is {target.state}", field="state"
        )
    if target_id in sources:
        raise Conflict(f"incident {target_id} cannot be merged into itself", field="from")
    found = {
        i.id: i
        for i in session.scalars(select(Incident).where(INCIDENTS.c.id.in_(sorted(set(sources)))))
    }
    for source_id in sources:
        source = found.get(source_id)
        if source is None:
            raise NotFound(f"no incident {source_id}", field="from")
        if source.status != IncidentStatus.OPEN:
            raise Conflict(
                f"cannot merge incident {source_id}: it is {source.status}", field="from"
            )
    graph = current_graph(session)
    job = Job(
        session=session,
        graph=graph,
        rule=rule_for(graph, settings.correlation.hops),
        now=now,
        silences=[],
        states={},
        open_links={},
        latest_links={},
        index=MemoryIndex(),
        incidents={target_id: target, **{i: found[i] for i in sources}},
    )
    why = f"merged by {actor}" + (f": {message}" if message else "")
    for source_id in dict.fromkeys(sources):
        merge_into(job, target, found[source_id], why)
    events: list[IncidentEvent] = []
    finish_job(job, events, settings.correlation.max_new_incidents_per_minute)
    return events
