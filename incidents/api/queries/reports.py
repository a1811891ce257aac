"""The summary report's reads and arithmetic: incidents opened in [start, end), counted
by severity, service and team, their response times, root causes and noisiest alerts.

Merged incidents are left out: their alerts and time live on in the incident they were
merged into, and counting both would count one outage twice.

"Paged without action": an incident that paged (`paged_at` is set), is resolved, was
never acknowledged, and has no timeline entry by anyone but `system` (playbook entries
are automation and do not count as a person acting). In practice: its alerts resolved by
themselves, or the quiet period or auto-resolve closed it, while nobody did anything.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from incidents.correlation.graph import ServiceGraph
from incidents.models import ALERTS, INCIDENTS, LINKS, TIMELINE
from incidents.vocab import SEVERITY_ORDER

TOP: Final = 10
CHUNK: Final = 500
AUTOMATION_KINDS: Final = ("playbook_run", "playbook_step")
NO_TEAM: Final = "unknown"


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def incidents_opened(session: Session, *, start: datetime, end: datetime) -> list[Any]:
    """The incidents opened in [start, end), merged ones left out."""
    i = INCIDENTS.c
    return list(
        session.execute(
            select(
                i.id,
                i.severity,
                i.services,
                i.root_cause_candidates,
                i.opened_at,
                i.acknowledged_at,
                i.resolved_at,
                i.paged_at,
                i.status,
            )
            .where(i.opened_at >= start, i.opened_at < end, i.status != "merged")
            .order_by(i.id)
        )
    )


def acted_on(session: Session, *, ids: Sequence[int]) -> set[int]:
    """Those of these incidents with a timeline entry by someone other than `system`."""
    t = TIMELINE.c
    found: set[int] = set()
    for part in _chunks(ids):
        found.update(
            session.scalars(
                select(t.incident_id)
                .where(
                    t.incident_id.in_(part),
                    t.actor != "system",
                    t.kind.not_in(AUTOMATION_KINDS),
                )
                .distinct()
            )
        )
    return found


def alertnames(session: Session, *, fingerprints: Sequence[str]) -> dict[str, str]:
    """The alertname label of each alert (its fingerprint when it has none)."""
    names = {fp: fp for fp in fingerprints}
    for part in _chunks(fingerprints):
        for fp, labels in session.execute(
            select(ALERTS.c.fingerprint, ALERTS.c.labels).where(ALERTS.c.fingerprint.in_(part))
        ):
            names[fp] = str((labels or {}).get("alertname") or fp)
    return names


def most_fired(session: Session, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Alerts by how many episodes started firing in [start, end), most first."""
    link = LINKS.c
    rows = session.execute(
        select(link.fingerprint, link.service, func.count())
        .where(link.starts_at >= start, link.starts_at < end)
        .group_by(link.fingerprint, link.service)
    ).all()
    names = alertnames(session, fingerprints=sorted({r[0] for r in rows}))
    fired: Counter[tuple[str, str]] = Counter()
    for fingerprint, service, count in rows:
        fired[(names[fingerprint], service)] += int(count)
    return [
        {"alertname": name, "service": service, "fired": n} for (name, service), n in _top(fired)
    ]


def paged_without_action(session: Session, *, incidents: Sequence[Any]) -> list[dict[str, Any]]:
    """Alerts by how many incidents they were in that paged and nobody acted on."""
    candidates = [
        int(r.id)
        for r in incidents
        if r.status == "resolved" and r.paged_at is not None and r.acknowledged_at is None
    ]
    quiet = sorted(set(candidates) - acted_on(session, ids=candidates))
    pairs: set[tuple[int, str, str]] = set()
    for part in _chunks(quiet):
        pairs.update(
            (int(i), str(fp), str(s))
            for i, fp, s in session.execute(
                select(LINKS.c.incident_id, LINKS.c.fingerprint, LINKS.c.service).where(
                    LINKS.c.incident_id.in_(part)
                )
            )
        )
    names = alertnames(session, fingerprints=sorted({fp for _, fp, _ in pairs}))
    per_alert = {(i, names[fp], service) for i, fp, service in pairs}
    counts = Counter((name, service) for _, name, service in per_alert)
    return [
        {"alertname": name, "service": service, "incidents": n}
        for (name, service), n in _top(counts)
    ]


def _top(counts: Counter[tuple[str, str]]) -> list[tuple[tuple[str, str], int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]


def span_stats(seconds: Sequence[float]) -> dict[str, Any]:
    """Count, mean and p90 (nearest rank) of a list of spans; null when empty."""
    if not seconds:
        return {"count": 0, "mean_seconds": None, "p90_seconds": None}
    ordered = sorted(seconds)
    rank = math.ceil(0.9 * len(ordered))
    return {
        "count": len(ordered),
        "mean_seconds": round(sum(ordered) / len(ordered), 3),
        "p90_seconds": round(ordered[rank - 1], 3),
    }


def _ranked(counts: Counter[str], key: str) -> list[dict[str, Any]]:
    return [
        {key: name, "count": n}
        for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def summary(
    session: Session, graph: ServiceGraph, *, start: datetime, end: datetime
) -> dict[str, Any]:
    """The whole summary report, in the shape the API returns."""
    rows = incidents_opened(session, start=start, end=end)
    severities = Counter(r.severity for r in rows)
    services: Counter[str] = Counter()
    teams: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    for r in rows:
        names = set(r.services or [])
        services.update(names)
        teams.update({_team(graph, s) for s in names})
        if r.root_cause_candidates:
            causes[str(r.root_cause_candidates[0])] += 1
    tta = [
        max(0.0, (r.acknowledged_at - r.opened_at).total_seconds())
        for r in rows
        if r.acknowledged_at is not None
    ]
    ttr = [
        max(0.0, (r.resolved_at - r.opened_at).total_seconds())
        for r in rows
        if r.status == "resolved" and r.resolved_at is not None
    ]
    return {
        "from": start,
        "to": end,
        "incidents": {
            "total": len(rows),
            "by_severity": {s: severities.get(s, 0) for s in SEVERITY_ORDER},
            "by_service": _ranked(services, "service"),
            "by_team": _ranked(teams, "team"),
        },
        "time_to_acknowledge": span_stats(tta),
        "time_to_resolve": span_stats(ttr),
        "top_root_causes": _ranked(causes, "service")[:TOP],
        "noisiest_alerts": {
            "most_fired": most_fired(session, start=start, end=end),
            "paged_without_action": paged_without_action(session, incidents=rows),
        },
    }


def _team(graph: ServiceGraph, service: str) -> str:
    if service not in graph:
        return NO_TEAM
    team = graph.node(service)["team"]
    return str(team) if team else NO_TEAM
