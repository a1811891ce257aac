"""What templates and trigger matchers see of an incident: plain data read in one go.

incident: id, title, severity, state, status, service, root_service, root_team,
          services, roots, blast_radius, labels (shared by its alerts), opened_at, url
alerts:   [{fingerprint, status, severity, service, labels, annotations, starts_at}]
alert:    the alert that triggered the run (else the incident's first alert)
steps:    {NAME: {status, ok, failed, skipped, result, output, error}} (earlier steps)
run:      {id, playbook, dry_run, trigger}
secrets:  {NAME: value}, from the settings (only while rendering; never recorded)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.correlation.store import current_graph
from incidents.models import ALERTS, INCIDENTS, LINKS
from incidents.notify.routing import graph_team_lookup, routing_labels
from incidents.vocab import MemberStatus

# The alerts a template or trigger sees at most, oldest first: a storm incident's
# ten-thousandth symptom changes nothing a playbook decides.
MAX_ALERTS = 500


def incident_context(
    session: Session, incident_ids: list[int], public_url: str = ""
) -> dict[int, dict[str, Any]]:
    """{incident id: {"incident": ..., "alerts": [...]}} for the incidents that exist."""
    if not incident_ids:
        return {}
    team_of = graph_team_lookup(current_graph(session))
    alerts: dict[int, list[dict[str, Any]]] = {i: [] for i in incident_ids}
    rows = session.execute(
        select(
            LINKS.c.incident_id,
            ALERTS.c.fingerprint,
            ALERTS.c.status,
            ALERTS.c.severity,
            ALERTS.c.service,
            ALERTS.c.labels,
            ALERTS.c.annotations,
            ALERTS.c.starts_at,
        )
        .join(ALERTS, ALERTS.c.fingerprint == LINKS.c.fingerprint)
        .where(LINKS.c.incident_id.in_(incident_ids))
        .where(LINKS.c.status != MemberStatus.MUTED)
        .order_by(LINKS.c.incident_id, LINKS.c.id)
    )
    for row in rows:
        into = alerts[row.incident_id]
        if len(into) < MAX_ALERTS:
            into.append(
                {
                    "fingerprint": row.fingerprint,
                    "status": row.status,
                    "severity": row.severity,
                    "service": row.service or "",
                    "labels": dict(row.labels or {}),
                    "annotations": dict(row.annotations or {}),
                    "starts_at": row.starts_at.isoformat(),
                }
            )
    out: dict[int, dict[str, Any]] = {}
    for inc in session.execute(
        select(INCIDENTS).where(INCIDENTS.c.id.in_(incident_ids))
    ).mappings():
        members = alerts.get(inc["id"], [])
        flat = routing_labels(
            severity=inc["severity"],
            status=inc["status"],
            roots=inc["roots"] or [],
            candidates=inc["root_cause_candidates"] or [],
            services=inc["services"] or [],
            team_of=team_of,
            alert_labels=[a["labels"] for a in members],
        )
        shared = {k: v for k, v in flat.items() if k not in _FACTS}
        url = f"{public_url.rstrip('/')}/api/v1/incidents/{inc['id']}" if public_url else ""
        out[inc["id"]] = {
            "incident": {
                "id": inc["id"],
                "title": inc["title"],
                "severity": inc["severity"],
                "state": inc["state"],
                "status": inc["status"],
                "service": flat["service"],
                "root_service": flat["root_service"],
                "root_team": flat["root_team"],
                "services": list(inc["services"] or []),
                "roots": list(inc["roots"] or []),
                "blast_radius": list(inc["blast_radius"] or []),
                "labels": shared,
                "opened_at": inc["opened_at"].isoformat(),
                "url": url,
            },
            "alerts": members,
            "facts": flat,
        }
    return out


_FACTS = ("severity", "service", "root_service", "root_team", "status")


def label_sets(
    view: Mapping[str, Any], fingerprints: list[str] | None = None
) -> list[dict[str, str]]:
    """What trigger matchers see: one label set per alert (only those of `fingerprints`
    when given): the alert's labels over the incident's facts, and the incident's
    severity and service always as `incident_severity` and `incident_service`."""
    facts: dict[str, str] = dict(view["facts"])
    base = {
        **facts,
        "incident_severity": facts["severity"],
        "incident_service": facts["service"],
    }
    alerts = view["alerts"]
    if fingerprints is not None:
        wanted = set(fingerprints)
        alerts = [a for a in alerts if a["fingerprint"] in wanted]
    sets = [{**base, **{str(k): str(v) for k, v in a["labels"].items()}} for a in alerts]
    # An incident whose alerts are all muted still has its own facts to match.
    return sets or [base]


def template_context(view: Mapping[str, Any], fingerprint: str | None = None) -> dict[str, Any]:
    """The incident part of a template's context: incident, alerts and the trigger alert."""
    alerts = view["alerts"]
    alert = next((a for a in alerts if a["fingerprint"] == fingerprint), None)
    if alert is None and alerts:
        alert = alerts[0]
    return {"incident": view["incident"], "alerts": alerts, "alert": alert or {}}
