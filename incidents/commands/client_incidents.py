"""`incidents incident list|show|ack|resolve|note` and `incidents oncall`."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from incidents.client.common import (
    client_command,
    connection_flags,
    local_user,
    output_flag,
    print_json,
)
from incidents.client.connection import UsageError
from incidents.client.http import ApiClient
from incidents.client.tables import cut, fields, table, when

PAGE = 500
STATES = ["triggered", "acknowledged", "investigating", "identified", "monitoring", "resolved"]


def _incident_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            i["id"],
            i["severity"],
            i["status"],
            i["state"],
            when(i["opened_at"]),
            ",".join(i.get("roots") or i.get("services") or []) or "-",
            i["title"],
        ]
        for i in items
    ]


@client_command
def incident_list(api: ApiClient, args: argparse.Namespace) -> int:
    """Incidents, newest first, filtered by status, state, severity and service."""
    params: dict[str, Any] = {}
    if args.status != "all":
        params["status"] = args.status
    if args.severity:
        params["severity"] = args.severity
    if args.service:
        params["service"] = args.service
    items: list[dict[str, Any]] = []
    cursor = None
    while len(items) < args.limit:
        # With --state the API's pages are filtered here, so full pages are asked for.
        params["limit"] = PAGE if args.state else min(PAGE, args.limit - len(items))
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/v1/incidents", params)
        # The API has no filter on the people's state: it is applied here.
        items.extend(i for i in page["items"] if not args.state or i["state"] in args.state)
        cursor = page.get("next_cursor")
        if not cursor:
            break
    items = items[: args.limit]
    if args.output == "json":
        print_json(items)
        return 0
    headers = ["ID", "SEV", "STATUS", "STATE", "OPENED (UTC)", "ROOTS", "TITLE"]
    print(table(headers, _incident_rows(items)))
    return 0


def describe(incident: dict[str, Any], timeline: int) -> str:
    """The incident for a person: summary, root causes, alerts, and recent timeline."""
    acked = incident.get("acknowledged_at")
    summary = fields(
        [
            ("Incident", f"#{incident['id']}  {incident['title']}"),
            ("Severity", incident["severity"]),
            ("Status", f"{incident['status']} ({incident['state']})"),
            ("Opened", when(incident["opened_at"], zone=True)),
            (
                "Acknowledged",
                f"{when(acked, zone=True)} by {incident.get('acknowledged_by') or '?'}"
                if acked
                else "no",
            ),
            (
                "Resolved",
                when(incident["resolved_at"], zone=True) if incident["resolved_at"] else "no",
            ),
            ("Assignee", incident.get("assignee") or "-"),
            ("Roots", ", ".join(incident["roots"]) or "-"),
            ("Services", ", ".join(incident["services"]) or "-"),
            ("Blast radius", ", ".join(incident["blast_radius"]) or "-"),
        ]
        + ([("Merged into", f"#{incident['merged_into']}")] if incident.get("merged_into") else [])
    )
    parts = [summary]
    causes = incident.get("root_causes") or []
    if causes:
        rows = [
            [n + 1, c["service"], "yes" if c["inferred"] else "no", c["reason"]]
            for n, c in enumerate(causes)
        ]
        parts.append("Root-cause candidates:\n" + table(["#", "SERVICE", "INFERRED", "WHY"], rows))
    alerts = incident.get("alerts") or []
    rows = [
        [
            a["labels"].get("alertname", "-"),
            a["service"],
            a["severity"],
            a["status"] + (" (stale)" if a.get("stale") else ""),
            when(a["starts_at"]),
            a["fingerprint"],
        ]
        for a in alerts
    ]
    headers = ["ALERTNAME", "SERVICE", "SEV", "STATUS", "STARTS (UTC)", "FINGERPRINT"]
    parts.append(f"Alerts ({len(alerts)}):\n" + table(headers, rows))
    entries = incident.get("timeline") or []
    recent = entries[-timeline:] if timeline > 0 else []
    rows = [[when(t["at"]), t["kind"], cut(t["actor"], 24), t["message"]] for t in recent]
    title = f"Timeline (last {len(recent)} of {len(entries)}):"
    parts.append(title + "\n" + table(["AT (UTC)", "KIND", "BY", "WHAT"], rows))
    return "\n\n".join(parts)


def incident_id(text: str) -> int:
    """The number in `42` or `#42`, or a usage error."""
    if not text.lstrip("#").isdigit():
        raise UsageError(f"{text!r} is not an incident id (a number such as 42)")
    return int(text.lstrip("#"))


@client_command
def incident_show(api: ApiClient, args: argparse.Namespace) -> int:
    """One incident in full."""
    incident = api.get(f"/api/v1/incidents/{incident_id(args.id)}")
    if args.output == "json":
        print_json(incident)
    else:
        print(describe(incident, args.timeline))
    return 0


def _act(api: ApiClient, args: argparse.Namespace, action: str, body: dict[str, Any]) -> int:
    number = incident_id(args.id)
    body["by"] = args.by or local_user()
    incident = api.post(f"/api/v1/incidents/{number}/{action}", body)
    if args.output == "json":
        print_json(incident)
    else:
        print(f"incident #{number}: {incident['status']} ({incident['state']})")
    return 0


@client_command
def incident_ack(api: ApiClient, args: argparse.Namespace) -> int:
    """Acknowledge: the escalation stops."""
    return _act(api, args, "acknowledge", {"message": args.message} if args.message else {})


@client_command
def incident_resolve(api: ApiClient, args: argparse.Namespace) -> int:
    """Resolve by hand."""
    return _act(api, args, "resolve", {"message": args.message} if args.message else {})


@client_command
def incident_note(api: ApiClient, args: argparse.Namespace) -> int:
    """Add a note to the timeline."""
    message = " ".join(args.text).strip()
    if not message:
        raise UsageError("the note is empty")
    return _act(api, args, "notes", {"message": message})


@client_command
def oncall(api: ApiClient, args: argparse.Namespace) -> int:
    """Who is on call now (or at --at), on one schedule or on each."""
    params = {"at": args.at} if args.at else None
    if args.schedule:
        names = [args.schedule]
    else:
        names = [s["name"] for s in api.get("/api/v1/schedules", params)["schedules"]]
    found = [api.get(f"/api/v1/schedules/{quote(n, safe='')}/oncall", params) for n in names]
    if args.output == "json":
        print_json(found[0] if args.schedule else found)
        return 0
    if not found:
        print("no schedules are configured")
        return 0
    rows = [
        [
            o["schedule"],
            ", ".join(o["users"]) if o["users"] else "(nobody: a gap)",
            when(o.get("until")) if o.get("until") else "-",
            o.get("source") or "-",
        ]
        for o in found
    ]
    print(table(["SCHEDULE", "ON CALL", "UNTIL (UTC)", "FROM"], rows))
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `incident` and `oncall`."""
    conn, out = connection_flags(), output_flag()
    incident = sub.add_parser("incident", help="list, show and act on incidents of a service")
    verbs = incident.add_subparsers(dest="incident_command", required=True, metavar="ACTION")
    listing = verbs.add_parser("list", parents=[conn, out], help="incidents, newest first")
    listing.add_argument(
        "--status",
        choices=["open", "resolved", "merged", "all"],
        default="open",
        help="open ones take alerts; resolved and merged ones are over",
    )
    listing.add_argument(
        "--state",
        action="append",
        choices=STATES,
        help="only incidents people have in these states; repeatable (default: all)",
    )
    listing.add_argument(
        "--severity",
        action="append",
        choices=["P0", "P1", "P2", "P3"],
        help="only these severities; repeatable (default: all)",
    )
    listing.add_argument("--service", help="only incidents affecting this service (default: any)")
    listing.add_argument("--limit", type=int, default=50, help="show at most this many")
    listing.set_defaults(run=incident_list)
    show = verbs.add_parser("show", parents=[conn, out], help="one incident in full")
    show.add_argument("id", metavar="ID", help="the incident's id (required)")
    show.add_argument("--timeline", type=int, default=15, help="timeline entries shown")
    show.set_defaults(run=incident_show)
    for name, run, what in (
        ("ack", incident_ack, "acknowledge: stops the escalation"),
        ("resolve", incident_resolve, "resolve by hand"),
    ):
        verb = verbs.add_parser(name, parents=[conn, out], help=what)
        verb.add_argument("id", metavar="ID", help="the incident's id (required)")
        verb.add_argument("-m", "--message", help="why; shown on the timeline (default: none)")
        verb.add_argument("--by", help="who acts (default: the local user name)")
        verb.set_defaults(run=run)
    note = verbs.add_parser("note", parents=[conn, out], help="add a note to the timeline")
    note.add_argument("id", metavar="ID", help="the incident's id (required)")
    note.add_argument("text", nargs="+", metavar="TEXT", help="the note (required)")
    note.add_argument("--by", help="who writes it (default: the local user name)")
    note.set_defaults(run=incident_note)

    who = sub.add_parser("oncall", parents=[conn, out], help="who is on call now")
    who.add_argument("schedule", nargs="?", metavar="SCHEDULE", help="(default: every schedule)")
    who.add_argument("--at", help="ISO 8601 time to ask about (default: now)")
    who.set_defaults(run=oncall)
