"""The storm cap: one body of unrelated alerts must not page thousands of times.

Past `max_new_incidents_per_minute` pages in the last minute (counted from the database,
so across every worker), new incidents still open but do not page one by one: they share
one "alert storm" page, and each one's timeline says so.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from incidents.models import INCIDENTS, TIMELINE
from incidents.pipeline.incident_state import Job, note
from incidents.vocab import IncidentStatus, TimelineKind

MINUTE = timedelta(minutes=1)


def may_page_opening(job: Job, cap: int) -> bool:
    """Take one opening page from the minute's budget; False once it is spent."""
    if cap <= 0:
        return True
    if job.storm_budget is None:
        paged = job.session.scalar(
            select(func.count())
            .select_from(INCIDENTS)
            .where(INCIDENTS.c.paged_at >= job.now - MINUTE)
        )
        job.storm_budget = cap - int(paged or 0)
    job.storm_budget -= 1
    return job.storm_budget >= 0


def page_storm(job: Job, cap: int) -> None:
    """One paging storm entry for the incidents this job folded, once per minute."""
    if not job.storm_folded:
        return
    live = [i for i in job.storm_folded if job.incident(i).status == IncidentStatus.OPEN]
    if not live:
        return
    paged_recently = job.session.scalar(
        select(func.count())
        .select_from(TIMELINE)
        .where(TIMELINE.c.kind == TimelineKind.STORM)
        .where(TIMELINE.c.pages)
        .where(TIMELINE.c.at >= job.now - MINUTE)
    )
    note(
        job,
        live[0],
        TimelineKind.STORM,
        f"alert storm: {len(live)} more incidents opened than the cap of {cap} a minute; "
        f"this page stands for them all (incidents {', '.join(map(str, live[:20]))}"
        f"{' ...' if len(live) > 20 else ''})",
        pages=not paged_recently,
        data={"incidents": live[:1000], "count": len(live), "cap": cap},
    )
