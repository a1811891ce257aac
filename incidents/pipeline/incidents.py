"""The incident stage: mute, detect flapping, place alerts into incidents, resolve.

It runs in the pipeline job's transaction. On PostgreSQL it first takes a transaction-
scoped advisory lock, so two workers handling related alerts at the same moment still
open one incident; SQLite serialises writers by itself. Holding the lock also means
nothing else changes incidents while the job runs, so the job reads what it needs once
(see `incident_state`) and works in memory: per alert, a bounded graph search and
dictionary look-ups, not queries. Where an alert goes is `correlation.grouping.place`;
what that does to incidents is `lifecycle`; the end of the job is `finish`.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.config import Settings
from incidents.correlation.grouping import Placement, place
from incidents.correlation.index import MemoryIndex
from incidents.correlation.rule import rule_for
from incidents.correlation.store import current_graph
from incidents.locks import lock_more_partitions, lock_partitions
from incidents.models import (
    ALERTS,
    INCIDENTS,
    LINKS,
    STATES,
    Alert,
    AlertState,
    Incident,
    IncidentAlert,
)
from incidents.pipeline import flapping, lifecycle, mute, storm
from incidents.pipeline.absorb import merge_into
from incidents.pipeline.finish import finish_job
from incidents.pipeline.incident_state import (
    DbIncidentIndex,
    Job,
    Member,
    NewState,
    State,
    alert_name,
    correlation_service,
    service_node,
)
from incidents.pipeline.mute import Inhibitor, active_silences, match_labels
from incidents.pipeline.stages import RunContext
from incidents.vocab import AlertStatus, IncidentStatus, MemberStatus


class IncidentStage:
    """Turns stored alerts into incidents."""

    name = "incidents"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.correlation
        self._inhibitor = Inhibitor(self._settings.inhibit_rules)
        self._window = timedelta(seconds=self._settings.window_seconds)

    def run(self, ctx: RunContext) -> None:
        """Process the job's alerts in start-time order."""
        if not ctx.fingerprints:
            return
        session = ctx.session
        # An alert's service never changes (its labels make its fingerprint): which
        # partitions to lock can be read before locking; its state only after.
        nodes = [
            service_node(service, labels, fingerprint)
            for service, labels, fingerprint in session.execute(
                select(ALERTS.c.service, ALERTS.c.labels, ALERTS.c.fingerprint).where(
                    ALERTS.c.fingerprint.in_(ctx.fingerprints)
                )
            )
        ]
        # And where its muted alerts' inhibitors stand, when a rule reaches across services.
        across = self._inhibitor.inhibitor_columns(session, ctx.fingerprints)
        nodes += [service_node(*columns) for columns in across]
        self._lock(session, nodes)
        # Read under the lock: another job may have stored a newer state meanwhile.
        fresh = list(
            session.scalars(
                select(Alert)
                .where(ALERTS.c.fingerprint.in_(ctx.fingerprints))
                .execution_options(populate_existing=True)
            )
        )
        fresh.sort(key=lambda a: (a.starts_at, a.fingerprint))
        # Nothing else writes incidents while we hold the lock, so the job flushes only
        # when it needs an id, not before every read.
        with session.no_autoflush:
            job = self._load(ctx, fresh)
            self._inhibitor.warm(
                session,
                [match_labels(a) for a in fresh if a.status == AlertStatus.FIRING],
                job.inhibit_cache,
            )
            for alert in fresh:
                self._process(job, alert)
            self._place_muted(job)
            finish_job(job, ctx.events, self._settings.max_new_incidents_per_minute)

    def _lock(self, session: Session, nodes: list[str]) -> None:
        """Lock the partitions of these services; once locked, the graph cannot change, so
        partitions computed from a graph replaced meanwhile are topped up."""
        graph = current_graph(session)
        partitions = {graph.partition_of(n) for n in nodes}
        if not lock_partitions(session, partitions):
            return  # the whole graph is locked
        now = current_graph(session)
        if now.digest != graph.digest:
            lock_more_partitions(session, {now.partition_of(n) for n in nodes} - partitions)

    # -- reading once ------------------------------------------------------------------------

    def _load(self, ctx: RunContext, alerts: list[Alert]) -> Job:
        session = ctx.session
        graph = current_graph(session)
        rule = rule_for(graph, self._settings.hops)
        fingerprints = [a.fingerprint for a in alerts]
        states: dict[str, State] = {
            s.fingerprint: s
            for s in session.scalars(
                select(AlertState).where(STATES.c.fingerprint.in_(fingerprints))
            )
        }
        open_links: dict[str, Member] = {}
        latest_links: dict[str, Member] = {}
        incidents: dict[int, Incident] = {}
        for link, incident in session.execute(
            select(IncidentAlert, Incident)
            .join(INCIDENTS, INCIDENTS.c.id == LINKS.c.incident_id)
            .where(LINKS.c.fingerprint.in_(fingerprints))
            .order_by(LINKS.c.id.desc())
        ).tuples():
            latest_links.setdefault(link.fingerprint, link)
            if incident.status == IncidentStatus.OPEN:
                open_links.setdefault(link.fingerprint, link)
            if incident.id is not None:
                incidents[incident.id] = incident
        index = MemoryIndex()
        firing = [a for a in alerts if a.status == AlertStatus.FIRING]
        if firing:
            near: set[str] = set()
            for service in {correlation_service(a) for a in firing}:
                near.update(rule.linked_to(service))
            earliest = min(a.starts_at for a in firing) - self._window
            latest = max(a.starts_at for a in firing) + self._window
            nearby = DbIncidentIndex(session, self._window).links_near(near, earliest, latest)
            for near_link in nearby:
                index.add_link(near_link)
            missing = {near.incident_id for near in nearby} - set(incidents)
            if missing:
                for incident in session.scalars(
                    select(Incident).where(INCIDENTS.c.id.in_(sorted(missing)))
                ):
                    if incident.id is not None:
                        incidents[incident.id] = incident
        return Job(
            session=session,
            graph=graph,
            rule=rule,
            now=ctx.now,
            silences=active_silences(session, ctx.now),
            states=states,
            open_links=open_links,
            latest_links=latest_links,
            index=index,
            incidents=incidents,
            open_hold=timedelta(seconds=self._settings.open_hold_seconds),
            quiet=timedelta(seconds=self._settings.quiet_period_seconds),
        )

    # -- one alert --------------------------------------------------------------------------

    def _state(self, job: Job, alert: Alert) -> State:
        state = job.states.get(alert.fingerprint)
        if state is None:
            state = NewState(
                fingerprint=alert.fingerprint,
                last_status=alert.status,
                last_state_at=alert.state_at,
                updated_at=job.now,
            )
            job.new_states.append(state)
            job.states[alert.fingerprint] = state
        elif (state.last_status, state.last_state_at) != (alert.status, alert.state_at):
            if state.last_status != alert.status:
                flapping.record_transition(job, self._settings, state, alert)
            state.last_status = alert.status
            state.last_state_at = alert.state_at
            state.updated_at = job.now
        return state

    def _process(self, job: Job, alert: Alert) -> None:
        state = self._state(job, alert)
        if alert.status == AlertStatus.RESOLVED:
            if state.silenced_by:
                state.silenced_by = []
            if state.inhibited_by:
                state.inhibited_by = []
            self._resolve(job, alert, state)
            return
        if mute.takes_no_part(alert, state):
            self._resolve(job, alert, state)  # leaves an incident it opened before it was ignored
            return

        open_link = job.open_links.get(alert.fingerprint)
        if open_link is not None and open_link.status != MemberStatus.MUTED:
            if open_link.status != MemberStatus.FIRING:
                open_link.status = MemberStatus.FIRING.value  # a flapping alert fired again
                job.refired.add(open_link.incident_id)
            return

        labels = match_labels(alert)
        silenced = sorted(s.id for s in job.silences if s.covers(alert, labels))
        inhibited = (
            []
            if silenced
            else self._inhibitor.inhibitors(job.session, alert, labels, job.inhibit_cache)
        )
        if silenced != state.silenced_by:
            state.silenced_by = silenced
        if inhibited != state.inhibited_by:
            state.inhibited_by = inhibited
        if silenced:
            return
        if inhibited:
            if open_link is None:
                job.muted.append((alert, inhibited))
            return
        if open_link is not None:
            self._unmute(job, alert, open_link)
            return
        if self._reopen(job, alert, state):
            return
        service = correlation_service(alert)
        placement = place(
            job.rule,
            service,
            alert.starts_at,
            job.index,
            lambda incident_id: lifecycle.as_open(job, incident_id),
            self._window,
        )
        self._apply(job, alert, service, placement)

    def _unmute(self, job: Job, alert: Alert, link: Member) -> None:
        """Its inhibitor resolved: the muted member now counts in its incident."""
        incident = job.incident(link.incident_id)
        link.status = MemberStatus.FIRING.value
        lifecycle.count_member(job, incident, alert, link.service)
        job.joins.setdefault(link.incident_id, []).append(
            {
                "fingerprint": alert.fingerprint,
                "name": alert_name(alert),
                "service": link.service,
                "reason": "no longer inhibited; it counts in this incident now",
            }
        )

    def _reopen(self, job: Job, alert: Alert, state: State) -> bool:
        """An alert firing again soon after its incident resolved reopens that incident
        instead of opening (and paging) a new one; once it is flapping, silently."""
        link = job.latest_links.get(alert.fingerprint)
        if link is None:
            return False
        incident = job.incident(link.incident_id)
        if incident.status != IncidentStatus.RESOLVED or incident.resolved_at is None:
            return False
        quiet = (alert.starts_at - incident.resolved_at).total_seconds()
        if quiet > self._settings.flap_window_seconds:
            return False
        lifecycle.reopen(job, alert, link, quiet=quiet, pages=not state.flapping)
        return True

    # -- placing -----------------------------------------------------------------------------

    def _apply(self, job: Job, alert: Alert, service: str, placement: Placement) -> None:
        if placement.target is None:
            cap = self._settings.max_new_incidents_per_minute
            folded = not storm.may_page_opening(job, cap)
            lifecycle.open_incident(job, alert, service, storm_cap=cap if folded else None)
            return
        target = job.incident(placement.target)
        for absorbed in placement.absorbed:
            merge_into(job, target, job.incident(absorbed), placement.reason)
        because = placement.as_data()
        lifecycle.add_member(job, target, alert, service, because)
        if placement.action in ("reroot", "merge") and placement.becomes_root:
            lifecycle.reroot(job, placement.target, service, alert, placement)
        job.joins.setdefault(placement.target, []).append(
            {
                "fingerprint": alert.fingerprint,
                "name": alert_name(alert),
                "service": service,
                **because,
            }
        )

    def _place_muted(self, job: Job) -> None:
        """Inhibited alerts join their inhibitor's incident as muted members."""
        if not job.muted:
            return
        wanted = sorted({fp for _, inhibitors in job.muted for fp in inhibitors})
        homes: dict[str, tuple[int, str]] = {}
        for fingerprint in wanted:
            link = job.open_links.get(fingerprint)
            if link is not None and link.status != MemberStatus.MUTED:
                homes[fingerprint] = (link.incident_id, link.service)
        missing = [fp for fp in wanted if fp not in homes]
        for at in range(0, len(missing), 5000):
            for fingerprint, incident_id, service in job.session.execute(
                select(LINKS.c.fingerprint, LINKS.c.incident_id, LINKS.c.service)
                .join(INCIDENTS, INCIDENTS.c.id == LINKS.c.incident_id)
                .where(LINKS.c.fingerprint.in_(missing[at : at + 5000]))
                .where(LINKS.c.status != MemberStatus.MUTED)
                .where(INCIDENTS.c.status == IncidentStatus.OPEN)
            ):
                homes[fingerprint] = (incident_id, service)
        # An inhibitor may stand in another partition (a rule that is not per service):
        # its incident is changed only under that partition's lock too.
        lock_more_partitions(job.session, {job.rule.partition_of(s) for _, s in homes.values()})
        for alert, inhibitors in job.muted:
            found = sorted(
                (job.incident(homes[fp][0]).opened_at, homes[fp][0], fp)
                for fp in inhibitors
                if fp in homes
            )
            if not found:
                continue  # its inhibitor is in no open incident (silenced, say): nothing to join
            _, incident_id, inhibitor = found[0]
            service = correlation_service(alert)
            because: dict[str, object] = {
                "action": "muted",
                "reason": f"inhibited by alert {inhibitor[:16]} on {homes[inhibitor][1]}, "
                "a member of this incident; it pages no one",
                "via": homes[inhibitor][1],
                "hops": None,
                "inhibited_by": inhibitor,
                "absorbed": [],
                "possibly_related": [],
            }
            lifecycle.add_member(
                job, job.incident(incident_id), alert, service, because, MemberStatus.MUTED
            )
        job.muted = []

    # -- resolving -------------------------------------------------------------------------

    def _resolve(self, job: Job, alert: Alert, state: State) -> None:
        link = job.open_links.get(alert.fingerprint)
        if link is None or link.status == MemberStatus.RESOLVED:
            return
        if link.status == MemberStatus.MUTED:
            # It never counted: it stays muted, so that firing again goes through the
            # mute checks and counts only once nothing inhibits it.
            return
        link.status = MemberStatus.RESOLVED.value
        if state.flapping:
            return  # a flapping alert's resolve does not close (and re-page) its incident
        job.maybe_resolved.add(link.incident_id)
