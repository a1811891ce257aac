"""The incident stage's once-per-job work: write the buffered rows, close what resolved,
recompute roots and candidates, page what rose, and record the job's timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert

from incidents import timeline
from incidents.correlation.candidates import ServiceSeen, rank_candidates
from incidents.models import BY_SERVICE, LINKS, STATES
from incidents.pipeline import lifecycle, paging, quiet, storm
from incidents.pipeline.incident_state import Job, note
from incidents.pipeline.stages import IncidentEvent
from incidents.vocab import IncidentStatus, TimelineKind


def write_rows(job: Job) -> None:
    """Insert the memberships, service rows and alert states this job buffered."""
    session = job.session
    session.flush()
    if job.new_links:
        session.execute(insert(LINKS), job.new_links)
        job.new_links = []
    if job.new_services:
        session.execute(insert(BY_SERVICE), job.new_services)
        job.new_services = []
    if job.new_states:
        session.execute(
            insert(STATES),
            [
                {
                    "fingerprint": st.fingerprint,
                    "last_status": st.last_status,
                    "last_state_at": st.last_state_at,
                    "transitions": st.transitions,
                    "flapping": st.flapping,
                    "silenced_by": st.silenced_by,
                    "inhibited_by": st.inhibited_by,
                    "updated_at": st.updated_at,
                }
                for st in job.new_states
            ],
        )
        job.new_states = []


def finish_job(job: Job, events: list[IncidentEvent], storm_cap: int) -> None:
    """Close incidents whose alerts all resolved, refresh what changed, write the timeline."""
    write_rows(job)
    for incident_id in sorted(job.maybe_resolved):
        incident = job.incident(incident_id)
        if incident.status != IncidentStatus.OPEN:
            continue
        firing, ended = lifecycle.firing_members(job.session, incident_id)
        if firing:
            continue
        if job.quiet:
            quiet.start(job, incident)
            continue
        entry_id = lifecycle.close(
            job.session, incident, ended or job.now, job.now, "all alerts resolved"
        )
        events.append(
            IncidentEvent(
                incident_id,
                TimelineKind.RESOLVED,
                incident.severity,
                pages=True,
                entry_id=entry_id,
            )
        )
    quiet.interrupt(job, job.touched | job.refired)
    refresh(job)
    paging.page_raises(job)
    events.extend(job.rerouted)
    job.rerouted = []
    note_joins(job)
    storm.page_storm(job, storm_cap)
    ids = timeline.write(job.session, job.notes)
    for row, entry_id in zip(job.notes, ids, strict=True):
        incident = job.incident(row["incident_id"])
        events.append(
            IncidentEvent(
                row["incident_id"],
                TimelineKind(row["kind"]),
                incident.severity,
                pages=row["pages"],
                data=row["data"],
                entry_id=entry_id,
            )
        )
    job.notes = []


def refresh(job: Job) -> None:
    """Roots, root-cause candidates, blast radius and title of every incident that changed."""
    for incident_id in sorted(job.touched):
        incident = job.incident(incident_id)
        if incident.status != IncidentStatus.OPEN:
            continue
        stats = incident.service_stats
        seen = {
            service: ServiceSeen(datetime.fromisoformat(v["first"]), str(v["worst"]))
            for service, v in stats.items()
        }
        incident.roots = job.rule.roots(stats)
        candidates = rank_candidates(job.rule, seen)
        previous = list(incident.root_cause_candidates)
        incident.root_causes = [c.as_data() for c in candidates]
        incident.root_cause_candidates = [c.service for c in candidates]
        first = candidates[0].service if candidates else None
        incident.blast_radius = job.graph.blast_radius(first) if first else []
        # The title names an alert: the earliest root's, whatever was inferred below it.
        root = min(incident.roots, key=lambda s: (seen[s].first, s)) if incident.roots else first
        named = stats.get(root or "", {})
        title = named.get("title") or f"{named.get('name', 'alert')} on {root or 'unknown'}"
        others = len(stats) - 1
        if others > 0:
            title += f" (+{others} affected service{'s' if others > 1 else ''})"
        incident.title = title
        if previous and first and previous[0] != first:
            note(
                job,
                incident_id,
                TimelineKind.ROOT_CAUSE_CHANGED,
                f"likely root cause is now {first} (was {previous[0]})",
                data={"from": previous[0], "to": first},
            )


def note_joins(job: Job) -> None:
    """One timeline entry per incident for the alerts that joined it in this job: a storm
    of a thousand symptoms reads as one line, not a thousand."""
    for incident_id, joined in job.joins.items():
        if len(joined) == 1:
            one = joined[0]
            message = f"alert {one['name']} on {one['service']} joined: {one['reason']}"
            data: dict[str, Any] = {k: v for k, v in one.items() if k != "name"}
        else:
            services = sorted({j["service"] for j in joined})
            shown = ", ".join(services[:5]) + (" ..." if len(services) > 5 else "")
            message = f"{len(joined)} alerts joined, on {shown}"
            data = {
                "count": len(joined),
                "services": services,
                "fingerprints": [j["fingerprint"] for j in joined][:100],
            }
        note(job, incident_id, TimelineKind.ALERT_JOINED, message, data=data)
    job.joins = {}
