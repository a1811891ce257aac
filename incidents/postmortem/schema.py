"""The postmortem's JSON: its JSON Schema (served at /api/v1/schemas/postmortem.json) and
the builder that turns the view into a document of that schema.

Versioning: `schema_version` is 1. Within a version, fields are only ever added, and a
consumer ignores fields it does not know; a field removed or renamed, or a meaning
changed, makes a new version. The published schema therefore allows unknown fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from incidents.postmortem.model import ROLES, Event, Postmortem

SCHEMA_VERSION: Final = 1
SCHEMA_PATH: Final = "/api/v1/schemas/postmortem.json"


def _s(description: str, *, nullable: bool = False, **more: Any) -> dict[str, Any]:
    return {
        "type": ["string", "null"] if nullable else "string",
        "description": description,
        **more,
    }


def _t(description: str, *, nullable: bool = False) -> dict[str, Any]:
    return _s(description + " (ISO 8601, UTC).", nullable=nullable, format="date-time")


def _n(description: str, *, kind: str = "number", nullable: bool = False) -> dict[str, Any]:
    return {"type": [kind, "null"] if nullable else kind, "description": description}


def _b(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def _list(description: str, items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": items}


def _strings(description: str) -> dict[str, Any]:
    return _list(description, {"type": "string"})


def _ref(name: str, description: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}", "description": description}


def _object(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
    }


_DEFS: dict[str, Any] = {
    "Incident": _object(
        "What the incident is.",
        {
            "id": _n("The incident's id.", kind="integer"),
            "title": _s("A one-line summary, from the alert on its first root."),
            "severity": _s("P0 (most urgent) to P3.", enum=["P0", "P1", "P2", "P3"]),
            "status": _s("open, resolved or merged."),
            "state": _s(
                "triggered, acknowledged, investigating, identified, monitoring or resolved."
            ),
            "services": _strings("The services its alerts are about."),
            "assignee": _s("Who it is assigned to.", nullable=True),
            "flapping": _b("Whether an alert of it kept firing and resolving."),
            "merged_into": _n("The incident it was merged into.", kind="integer", nullable=True),
        },
    ),
    "Times": _object(
        "When things happened, and the spans between them.",
        {
            "detected_at": _t("When its earliest alert started"),
            "first_page_at": _t("When the first notification reached a provider", nullable=True),
            "acknowledged_at": _t("When someone acknowledged it", nullable=True),
            "acknowledged_by": _s("Who acknowledged it.", nullable=True),
            "resolved_at": _t("When it resolved", nullable=True),
            "resolved_by": _s("Who resolved it: `system` when its alerts did.", nullable=True),
            "time_to_acknowledge_seconds": _n("acknowledged_at - detected_at.", nullable=True),
            "time_to_resolve_seconds": _n("resolved_at - detected_at.", nullable=True),
            "duration_seconds": _n("From detection to resolution, or to now if ongoing."),
            "ongoing": _b("True while it is not resolved."),
        },
    ),
    "Cause": _object(
        "A ranked root-cause candidate.",
        {
            "rank": _n("1 is the most likely.", kind="integer"),
            "service": _s("The service."),
            "inferred": _b("True when it raised no alert: a dependency its roots share."),
            "reason": _s("Why it is a candidate."),
            "explains": _strings("The alerting services that depend on it."),
        },
    ),
    "Alert": _object(
        "One alert of the incident and why it joined (the correlation explanation).",
        {
            "fingerprint": _s("The alert's fingerprint."),
            "alertname": _s("Its alertname label (the fingerprint if it has none)."),
            "service": _s("The service it is about."),
            "severity": _s("Its severity."),
            "status": _s("firing, resolved or muted."),
            "starts_at": _t("When it started firing"),
            "ends_at": _t("When it resolved", nullable=True),
            "action": _s("How it joined: open, join, reroot, merge or muted."),
            "reason": _s("Why it joined, for a person."),
            "via": _s("The service that linked it.", nullable=True),
            "hops": _n("The graph distance to `via`.", kind="integer", nullable=True),
            "labels": {
                "type": "object",
                "description": "Its labels.",
                "additionalProperties": {"type": "string"},
            },
        },
    ),
    "Related": _object(
        "Another incident that one of its alerts could have joined.",
        {
            "id": _n("Its id.", kind="integer"),
            "title": _s("Its title."),
            "status": _s("Its status now."),
            "merged_into": _n("Where it went, if merged.", kind="integer", nullable=True),
            "alerts": _strings("The alertnames of this incident that could have joined it."),
        },
    ),
    "Node": _object(
        "A service in the picture.",
        {
            "service": _s("The service."),
            "team": _s("Its team in the graph.", nullable=True),
            "role": _s("What it is in this incident, most telling role.", enum=list(ROLES)),
            "alerting": _b("Whether it raised an alert in this incident."),
            "in_blast_radius": _b("Whether it depends on the most likely cause."),
            "depth": _n("Its layer: 0 depends on nothing drawn.", kind="integer"),
        },
    ),
    "Edge": _object(
        "A dependency between two drawn services.",
        {"source": _s("The dependent service."), "target": _s("The service it depends on.")},
    ),
    "Graph": _object(
        "The dependency graph around the incident.",
        {
            "nodes": _list("The services drawn.", {"$ref": "#/$defs/Node"}),
            "edges": _list("Their dependencies.", {"$ref": "#/$defs/Edge"}),
            "left_out": _n("Services of the neighbourhood not drawn (size cap).", kind="integer"),
        },
    ),
    "Event": _object(
        "One timeline event.",
        {
            "at": _t("When it happened"),
            "kind": _s(
                "What happened: a timeline kind, or alert_fired, alert_resolved, "
                "notification; new kinds may appear."
            ),
            "actor": _s("Who did it: `system` for the service, `alertmanager` for alerts."),
            "message": _s("What happened, for a person."),
            "source": _s("Where it comes from.", enum=["timeline", "alert", "notification"]),
            "data": {"type": "object", "description": "Details that depend on `kind`."},
        },
    ),
    "Delivery": _object(
        "One notification to one target.",
        {
            "event": _s("What it told."),
            "receiver": _s("The routing receiver that asked for it."),
            "target": _s("The channel, address, number or URL."),
            "status": _s("pending, sending, sent, failed, cancelled, bundled or digest."),
            "attempts": _n("Sends tried.", kind="integer"),
            "created_at": _t("When routing asked for it"),
            "sent_at": _t("When the provider accepted it", nullable=True),
            "error": _s("The last error.", nullable=True),
            "provider_status": _s("The provider's last word on delivery.", nullable=True),
        },
    ),
    "Channel": _object(
        "The notifications of one channel.",
        {
            "channel": _s("slack, email, sms, voice, webhook or console."),
            "counts": {
                "type": "object",
                "description": "How many ended in each status.",
                "additionalProperties": {"type": "integer"},
            },
            "deliveries": _list("Each notification, oldest first.", {"$ref": "#/$defs/Delivery"}),
        },
    ),
    "EscalationStep": _object(
        "An escalation step that ran.",
        {
            "at": _t("When it ran"),
            "policy": _s("The policy."),
            "level": _n("The level (from 1).", kind="integer"),
            "round": _n("The round (from 1).", kind="integer"),
            "paged": _strings("Who was paged, and how."),
            "done": _b("Whether the policy was exhausted with it."),
        },
    ),
    "PlaybookStep": _object(
        "One step of a playbook run.",
        {
            "at": _t("When it was recorded"),
            "step": _s("The step's name."),
            "action": _s("The action it ran.", nullable=True),
            "status": _s("How it ended.", nullable=True),
            "result": _s("What it returned.", nullable=True),
            "error": _s("Why it failed.", nullable=True),
        },
    ),
    "PlaybookRun": _object(
        "A playbook run on the incident.",
        {
            "run_id": _s("The run's id."),
            "playbook": _s("The playbook."),
            "status": _s("How the run stands or ended.", nullable=True),
            "started_at": _t("Its first timeline entry"),
            "steps": _list("Its steps in order.", {"$ref": "#/$defs/PlaybookStep"}),
        },
    ),
    "Section": _object(
        "A section for people.",
        {
            "key": _s(
                "A stable key.",
                enum=["impact", "root_cause", "went_well", "went_badly", "action_items"],
            ),
            "title": _s("Its heading."),
            "prefill": _strings("What the data says; a starting point, not the final text."),
            "needs_author": _b("Whether a person must write (or confirm) it."),
        },
    ),
}

POSTMORTEM_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Incident postmortem",
    "description": "GET /api/v1/incidents/{id}/postmortem?format=json. Version 1: fields are "
    "only added within a version; consumers ignore fields they do not know.",
    "type": "object",
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION, "description": "The schema's version: 1."},
        "generated_at": _t("When this document was made"),
        "incident": _ref("Incident", "What the incident is."),
        "times": _ref("Times", "Detection, paging, acknowledgement and resolution."),
        "roots": _strings("Its alerting services that no other lies below."),
        "root_causes": _list("Ranked root-cause candidates.", {"$ref": "#/$defs/Cause"}),
        "blast_radius": _strings("Every service depending on the most likely cause."),
        "alerts": _list(
            "Its alerts in start order, with why each joined.", {"$ref": "#/$defs/Alert"}
        ),
        "possibly_related": _list(
            "Incidents its alerts could have joined.", {"$ref": "#/$defs/Related"}
        ),
        "graph": _ref("Graph", "The dependency graph around the incident."),
        "timeline": _list("Everything that happened, oldest first.", {"$ref": "#/$defs/Event"}),
        "notifications": _list("Notifications per channel.", {"$ref": "#/$defs/Channel"}),
        "escalation": _list("Escalation steps that ran.", {"$ref": "#/$defs/EscalationStep"}),
        "playbook_runs": _list("Playbook runs.", {"$ref": "#/$defs/PlaybookRun"}),
        "sections": _list(
            "Impact, root cause, what went well and badly, action items.",
            {"$ref": "#/$defs/Section"},
        ),
    },
    "$defs": _DEFS,
}
POSTMORTEM_SCHEMA["required"] = list(POSTMORTEM_SCHEMA["properties"])


def iso(value: datetime | None) -> str | None:
    """A time as ISO 8601 in UTC with a Z."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _event(e: Event) -> dict[str, Any]:
    return {
        "at": iso(e.at),
        "kind": e.kind,
        "actor": e.actor,
        "message": e.message,
        "source": e.source,
        "data": e.data,
    }


def postmortem_json(pm: Postmortem) -> dict[str, Any]:
    """The postmortem as a document of POSTMORTEM_SCHEMA."""
    f, t = pm.incident, pm.times
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": iso(pm.generated_at),
        "incident": {
            "id": f.id,
            "title": f.title,
            "severity": f.severity,
            "status": f.status,
            "state": f.state,
            "services": list(f.services),
            "assignee": f.assignee,
            "flapping": f.flapping,
            "merged_into": f.merged_into,
        },
        "times": {
            "detected_at": iso(t.detected_at),
            "first_page_at": iso(t.first_page_at),
            "acknowledged_at": iso(t.acknowledged_at),
            "acknowledged_by": t.acknowledged_by,
            "resolved_at": iso(t.resolved_at),
            "resolved_by": t.resolved_by,
            "time_to_acknowledge_seconds": t.time_to_acknowledge_seconds,
            "time_to_resolve_seconds": t.time_to_resolve_seconds,
            "duration_seconds": t.duration_seconds,
            "ongoing": t.ongoing,
        },
        "roots": list(pm.roots),
        "root_causes": [{**vars(c), "explains": list(c.explains)} for c in pm.root_causes],
        "blast_radius": list(pm.blast_radius),
        "alerts": [
            {**vars(a), "starts_at": iso(a.starts_at), "ends_at": iso(a.ends_at)} for a in pm.alerts
        ],
        "possibly_related": [{**vars(r), "alerts": list(r.alerts)} for r in pm.related],
        "graph": {
            "nodes": [vars(n) for n in pm.graph.nodes],
            "edges": [vars(e) for e in pm.graph.edges],
            "left_out": pm.graph.left_out,
        },
        "timeline": [_event(e) for e in pm.timeline],
        "notifications": [
            {
                "channel": c.channel,
                "counts": c.counts,
                "deliveries": [
                    {**vars(d), "created_at": iso(d.created_at), "sent_at": iso(d.sent_at)}
                    for d in c.deliveries
                ],
            }
            for c in pm.notifications
        ],
        "escalation": [{**vars(s), "at": iso(s.at), "paged": list(s.paged)} for s in pm.escalation],
        "playbook_runs": [
            {
                "run_id": r.run_id,
                "playbook": r.playbook,
                "status": r.status,
                "started_at": iso(r.started_at),
                "steps": [{**vars(s), "at": iso(s.at)} for s in r.steps],
            }
            for r in pm.playbook_runs
        ],
        "sections": [{**vars(s), "prefill": list(s.prefill)} for s in pm.sections],
    }


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = _inline(defs[ref.removeprefix("#/$defs/")], defs)
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return {**target, **extra}
        return {k: _inline(v, defs) for k, v in node.items() if k not in ("$defs", "$schema")}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node


def openapi_schema() -> dict[str, Any]:
    """The schema with its definitions inlined, for the OpenAPI document."""
    inlined: dict[str, Any] = _inline(POSTMORTEM_SCHEMA, POSTMORTEM_SCHEMA["$defs"])
    return inlined
