"""The routing stage: incident events in, notification rows out, in the job's transaction.

It runs after the incident stage and reads the events that stage left in the run
context. For each paging event (opened, severity raised above what was paged, reopened,
resolved) it builds the labels routes see, walks the routing tree, and writes one
outbox row per (event, channel, target) of every matched receiver: the notify worker
sends them after commit. An opening's rows wait until its hold ends, so a merge within
the hold can still cancel them.

Symptoms update, they do not post: alerts joining an incident, or a re-root, become one
`updated` row per Slack target, and only while none is already waiting for that target,
so a storm of joins is a handful of message edits; a later join's lines are folded into
the waiting row (incidents.notify.update_fold), so the thread reply counts every alert.

A matched route's timings (incidents.notify.routing): `group_wait` holds the opening
page for that long after the incident opened instead of `correlation.open_hold_seconds`,
and `group_interval` keeps an update at least that long after the last one to the same
target. `repeat_interval` is the reminder sweep's (incidents.notify.reminders).

Digest receivers get no immediate rows: their events wait as `digest` rows for the
daily email. No network call here.

A playbook run waiting for approval (a PLAYBOOK_RUN event with `approval` in its data) is
action-required: it becomes `approval` rows for the Slack, email and SMS targets
(incidents.notify.approval_note). Other playbook entries stay on the timeline only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from incidents import bulk, timeline
from incidents.config import Settings
from incidents.correlation.store import current_graph
from incidents.models import ALERTS, INCIDENTS, LINKS, Incident
from incidents.notify import approval_note, update_fold
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.routing import RouteOptions, RoutingTree, graph_team_lookup, routing_labels
from incidents.pipeline.stages import IncidentEvent, RunContext, TaskRef
from incidents.tasks import NOTIFY_TASK
from incidents.vocab import MemberStatus, TimelineKind
from incidents.warroom import rows as warroom

PAGING = {
    TimelineKind.OPENED,
    TimelineKind.SEVERITY_RAISED,
    TimelineKind.REOPENED,
    TimelineKind.RESOLVED,
}
UPDATES = {TimelineKind.ALERT_JOINED, TimelineKind.REROOTED}
# What people did: edits the Slack message and replies in its thread, replies in the
# email thread, and goes to webhooks; texts and calls are for pages only.
STATE_CHANGES = {
    TimelineKind.ACKNOWLEDGED,
    TimelineKind.STATUS_CHANGED,
    TimelineKind.SEVERITY_CHANGED,
    TimelineKind.ASSIGNED,
    TimelineKind.NOTE,
}
STATE_CHANNELS = ("slack", "email", "webhook")
# Pages that start the receiver's escalation policy (unless one is running already).
ESCALATES = {TimelineKind.OPENED, TimelineKind.REOPENED, TimelineKind.SEVERITY_RAISED}
# Channels that edit an existing message on updates.
UPDATING_CHANNELS = ("slack",)
# Common labels are read from at most this many alerts of an incident.
LABEL_SAMPLE = 500


class RoutingStage:
    """Writes the notifications that the job's incident events call for."""

    name = "routing"

    def __init__(self, settings: Settings) -> None:
        self._tree = RoutingTree.from_settings(settings.routing)
        self._open_hold = timedelta(seconds=settings.correlation.open_hold_seconds)
        self._warroom = warroom.WarRoomPlan.from_settings(settings)  # the P0 war room

    def run(self, ctx: RunContext) -> None:
        """Route this slice's events (the incident stage appended them)."""
        # A big job's later slices see earlier slices' events again: the outbox's unique
        # key makes routing them twice add nothing.
        events = [e for e in ctx.events if e.entry_id is not None and _wanted(e)]
        if not events:
            return
        team_of = graph_team_lookup(current_graph(ctx.session))
        incident_ids = sorted({e.incident_id for e in events})
        labels = incident_labels(ctx.session, incident_ids, team_of)
        # Updates already waiting, kept current as this job adds more: one per target;
        # and when each target's last update was due (for group_interval).
        keys = [f"entry:{e.entry_id}" for e in events if e.kind in UPDATES]
        updates = update_fold.Updates(ctx.session, incident_ids, keys)
        last_update = _last_updates(ctx.session, incident_ids)
        rows: list[dict[str, Any]] = []
        for event in events:
            if event.incident_id not in labels:
                continue
            for receiver, options in self._tree.routed(labels[event.incident_id]):
                if receiver.digest is not None:
                    rows += self._digest_rows(ctx, event, receiver.name, receiver.targets)
                    continue
                due = self._due(ctx, event, options)
                if receiver.escalation_policy and event.kind in ESCALATES and event.pages:
                    start_escalation(ctx, event, receiver.name, receiver.escalation_policy, due)
                new = self._rows(ctx, event, receiver.name, receiver.targets, updates, due)
                if options.group_interval is not None and event.kind in UPDATES:
                    _space_updates(new, last_update, options.group_interval)
                rows += new
        updates.store(ctx.session)
        # The P0 war room (incidents.warroom): its rows, whatever the routes say.
        rows += warroom.rows_for(ctx, events, self._warroom)
        if rows:
            insert_rows(ctx.session, rows)
            ctx.after_commit.extend(wake_ups(ctx, rows))

    def _due(self, ctx: RunContext, event: IncidentEvent, options: RouteOptions) -> datetime:
        """When the event's rows may go out: an opening waits for its hold (the route's
        group_wait when it sets one, counted from the opening)."""
        hold = event.data.get("hold_until") if event.kind == TimelineKind.OPENED else None
        if not hold:
            return ctx.now
        until = datetime.fromisoformat(hold)
        if options.group_wait is not None:
            until = until - self._open_hold + options.group_wait
        return max(ctx.now, until)

    def _digest_rows(
        self, ctx: RunContext, event: IncidentEvent, receiver: str, targets: Any
    ) -> list[dict[str, Any]]:
        """Paging events of a digest receiver wait, as `digest` rows, for the daily email."""
        if event.kind in UPDATES or event.kind in STATE_CHANGES or approval_note.is_request(event):
            return []
        return [
            {
                **_digest_row_values(ctx, event),
                "receiver": receiver,
                "channel": "email",
                "target": t,
            }
            for t in targets.get("email", ())
        ]

    def _rows(
        self,
        ctx: RunContext,
        event: IncidentEvent,
        receiver: str,
        targets: Any,
        updates: update_fold.Updates,
        not_before: datetime,
    ) -> list[dict[str, Any]]:
        if approval_note.is_request(event):
            return approval_note.rows(ctx, event, receiver, targets)
        updating = event.kind in UPDATES
        kind = "updated" if updating else str(event.kind)
        rows = []
        for channel, channel_targets in targets.items():
            if updating and channel not in UPDATING_CHANNELS:
                continue
            if event.kind in STATE_CHANGES and channel not in STATE_CHANNELS:
                continue
            for target in channel_targets:
                row = {
                    "incident_id": event.incident_id,
                    "event_key": f"entry:{event.entry_id}",
                    "event": kind,
                    "receiver": receiver,
                    "channel": channel,
                    "target": target,
                    "status": "pending",
                    "attempts": 0,
                    "not_before": not_before,
                    "created_at": ctx.now,
                    "updated_at": ctx.now,
                    "details": _details(event),
                }
                if updating:
                    # One update per target at a time: a later one's lines join it.
                    routed = updates.route(row)
                    rows += [routed] if routed is not None else []
                    continue
                rows.append(row)
        return rows


def incident_labels(
    session: Session, incident_ids: list[int], team_of: Any
) -> dict[int, dict[str, str]]:
    """The labels routes see, for each of the incidents."""
    out: dict[int, dict[str, str]] = {}
    # The counted alerts' labels of every incident at once, at most LABEL_SAMPLE each.
    rank = (
        func.row_number().over(partition_by=LINKS.c.incident_id, order_by=LINKS.c.id).label("rank")
    )
    sampled = (
        select(LINKS.c.incident_id, ALERTS.c.labels, rank)
        .join(ALERTS, ALERTS.c.fingerprint == LINKS.c.fingerprint)
        .where(LINKS.c.incident_id.in_(incident_ids))
        .where(LINKS.c.status != MemberStatus.MUTED)
        .subquery()
    )
    by_incident: dict[int, list[dict[str, str]]] = {}
    for incident_id, alert_labels in session.execute(
        select(sampled.c.incident_id, sampled.c.labels).where(sampled.c.rank <= LABEL_SAMPLE)
    ):
        by_incident.setdefault(incident_id, []).append(alert_labels)
    for incident in session.execute(
        select(INCIDENTS).where(INCIDENTS.c.id.in_(incident_ids))
    ).mappings():
        alert_labels = by_incident.get(incident["id"], [])
        out[incident["id"]] = routing_labels(
            severity=incident["severity"],
            status=incident["status"],
            roots=incident["roots"] or [],
            candidates=incident["root_cause_candidates"] or [],
            services=incident["services"] or [],
            team_of=team_of,
            alert_labels=alert_labels,
        )
    return out


def start_escalation(
    ctx: RunContext, event: IncidentEvent, receiver: str, name: str, first: datetime
) -> None:
    """Freeze the receiver's policy onto the incident; its first level pages at `first`,
    when the opening hold ends (the escalation sweep runs it)."""
    from incidents.escalation.engine import freeze
    from incidents.escalation.store import read_policies

    incident = ctx.session.get(Incident, event.incident_id)
    if incident is None or incident.status != "open":
        return
    policy = read_policies(ctx.session).by_name().get(name)
    if policy is None:
        timeline.write(
            ctx.session,
            [
                timeline.entry(
                    event.incident_id,
                    TimelineKind.NOTIFICATION_FAILED,
                    f"receiver {receiver} names escalation policy {name!r}, which does not "
                    "exist: nobody is escalated to; define it (PUT /api/v1/escalation-policies)",
                    at=ctx.now,
                    data={"receiver": receiver, "policy": name},
                )
            ],
        )
        return
    freeze(incident, policy, receiver, first)


def wake_ups(ctx: RunContext, rows: Sequence[dict[str, Any]]) -> list[TaskRef]:
    """After commit, each channel with new notifications is told when the first is due,
    so a page goes out at once and not at the next sweep."""
    due: dict[str, float] = {}
    for row in rows:
        if row["status"] != "pending":
            continue
        wait = max(0.0, (row["not_before"] - ctx.now).total_seconds())
        due[row["channel"]] = min(wait, due.get(row["channel"], wait))
    return [
        TaskRef(NOTIFY_TASK, {"channel": channel}, countdown=wait)
        for channel, wait in sorted(due.items())
    ]


def _digest_row_values(ctx: RunContext, event: IncidentEvent) -> dict[str, Any]:
    return {
        "incident_id": event.incident_id,
        "event_key": f"entry:{event.entry_id}",
        "event": str(event.kind),
        "status": "digest",
        "attempts": 0,
        "not_before": ctx.now,
        "created_at": ctx.now,
        "updated_at": ctx.now,
        "details": [],
    }


def _wanted(event: IncidentEvent) -> bool:
    return (
        (event.pages and event.kind in PAGING)
        or event.kind in UPDATES
        or event.kind in STATE_CHANGES
        or approval_note.is_request(event)
    )


def _details(event: IncidentEvent) -> list[str]:
    data = event.data
    if event.kind == TimelineKind.ALERT_JOINED:
        if "count" in data:
            return [f"{data['count']} alerts joined, on {', '.join(data['services'][:10])}"]
        return [f"alert on {data.get('service', '?')} joined: {data.get('reason', '')}"]
    if event.kind == TimelineKind.REROOTED:
        return [f"new root: {data.get('service', '?')}"]
    if event.kind in STATE_CHANGES or "by" in data:
        who = f"{data.get('by', '?')}" + (
            f" via {data['via']}" if data.get("via") not in (None, "api") else ""
        )
        said = f"{str(event.kind).replace('_', ' ')} by {who}"
        if "to" in data:
            said += f": now {data['to']}"
        return [said] + ([str(data["message"])] if data.get("message") else [])
    return []


Key = tuple[int, str, str]


def _last_updates(session: Session, incident_ids: list[int]) -> dict[Key, datetime]:
    """When the latest update to each (incident, channel, target) was due, sent or not."""
    n = NOTIFICATIONS.c
    rows = session.execute(
        select(n.incident_id, n.channel, n.target, func.max(n.not_before))
        .where(n.incident_id.in_(incident_ids))
        .where(n.event == "updated", n.status.in_(("pending", "sending", "sent")))
        .group_by(n.incident_id, n.channel, n.target)
    ).tuples()
    return {(i, c, t): due for i, c, t, due in rows}


def _space_updates(
    rows: list[dict[str, Any]], last: dict[Key, datetime], interval: timedelta
) -> None:
    """Hold new update rows until `interval` after the target's previous update."""
    for row in rows:
        if row["event"] != "updated" or row["status"] != "pending":
            continue  # a folded row goes out with the update it was folded into
        key = (row["incident_id"], row["channel"], row["target"])
        if key in last:
            row["not_before"] = max(row["not_before"], last[key] + interval)
        last[key] = row["not_before"]


def insert_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert, skipping rows whose (incident, event, channel, target) already exists."""
    bulk.insert(session, NOTIFICATIONS, rows, skip_conflicts=True)
