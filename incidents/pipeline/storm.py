"""The storm cap: one body of unrelated alerts must not page thousands of times.

Past `max_new_incidents_per_minute` pages in the last minute (counted from the database,
so across every worker), new incidents still open but do not page one by one: they share
one "alert storm" page, and each one's timeline says so.

On PostgreSQL, jobs on different graph partitions run at once and cannot see each other's
uncommitted incidents, so the budget is spent through the locks (`locks.reserve_page`):
each opening page first takes a lock of its own, held until its job ends, and counts
the pages committed in the last minute plus the reservations held by every running job.
A reservation is visible to the others before its job commits; the count comes after the
reservation and reads the lock table before the incidents, so two jobs can never both
miss each other (at worst both count both, and the budget is under-spent by one for the
few milliseconds they overlap). Each reserved page is one lock, so a job holds at most
cap + 1 of them (31 with the default cap). The storm page itself is decided by one job
at a time.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from incidents.locks import reserve_page, reserved_pages, write_storm_page
from incidents.models import INCIDENTS, TIMELINE
from incidents.pipeline.incident_state import Job, note
from incidents.vocab import IncidentStatus, TimelineKind

MINUTE = timedelta(minutes=1)


def may_page_opening(job: Job, cap: int) -> bool:
    """Take one opening page from the minute's budget; False once it is spent."""
    if cap <= 0:
        return True
    if job.storm_budget is not None and job.storm_budget < 0:
        return False  # spent: the rest of this job's openings fold without asking again
    if reserve_page(job.session):
        # Read the reservations before the incidents: a job committing in between is then
        # counted twice rather than not at all. This job's own earlier openings are both
        # reserved and (to itself) visible: counted once.
        held = reserved_pages(job.session) - job.storm_reserved
        job.storm_reserved += 1
        job.storm_budget = cap - _paged_in_the_last_minute(job) - held
        return job.storm_budget >= 0
    if job.storm_budget is None:  # SQLite: one writer at a time, so this job's count holds
        job.storm_budget = cap - _paged_in_the_last_minute(job)
    job.storm_budget -= 1
    return job.storm_budget >= 0


def _paged_in_the_last_minute(job: Job) -> int:
    paged = job.session.scalar(
        select(func.count()).select_from(INCIDENTS).where(INCIDENTS.c.paged_at >= job.now - MINUTE)
    )
    return int(paged or 0)


def page_storm(job: Job, cap: int) -> None:
    """One paging storm entry for the incidents this job folded, once per minute."""
    if not job.storm_folded:
        return
    live = [i for i in job.storm_folded if job.incident(i).status == IncidentStatus.OPEN]
    if not live:
        return
    # One job at a time decides on the storm page; one that finds another deciding leaves
    # the page to it.
    paged_recently = not write_storm_page(job.session) or job.session.scalar(
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
