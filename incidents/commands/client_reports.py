"""`incidents postmortem ID` and `incidents report`: documents the service writes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from incidents.client.common import client_command, connection_flags, output_flag, print_json
from incidents.client.connection import UsageError
from incidents.client.http import ApiClient, ClientError
from incidents.client.tables import parse_time, seconds, table
from incidents.commands.client_incidents import incident_id

MEDIA = {"md": "text/markdown", "json": "application/json", "html": "text/html"}


@client_command
def postmortem(api: ApiClient, args: argparse.Namespace) -> int:
    """Fetch an incident's postmortem; write it to FILE, or to stdout."""
    number = incident_id(args.id)
    response = api.send(
        "GET",
        f"/api/v1/incidents/{number}/postmortem",
        params={"format": args.format},
        accept=MEDIA[args.format],
    )
    if args.file in (None, "-"):
        sys.stdout.write(response.text)
        if response.text and not response.text.endswith("\n"):
            sys.stdout.write("\n")
        return 0
    path = Path(args.file)
    try:
        path.write_bytes(response.content)
    except OSError as exc:
        raise ClientError(f"{path}: cannot write: {exc.strerror}") from None
    print(f"postmortem of incident #{number} written to {path} ({len(response.content)} bytes)")
    return 0


def _check_time(value: str | None, flag: str) -> str | None:
    if value is None:
        return None
    try:
        parse_time(value)
    except ValueError:
        raise UsageError(f"{flag}: {value!r} is not an ISO 8601 time") from None
    return value


def _counts(title: str, key: str, items: list[dict[str, Any]]) -> str:
    rows = [[item[key], item["count"]] for item in items]
    return f"{title}:\n" + (table([key.upper(), "COUNT"], rows) if rows else "  none")


def describe_report(report: dict[str, Any]) -> str:
    """The summary report as tables."""
    counts = report["incidents"]
    by_severity = counts.get("by_severity") or {}
    severities = ", ".join(f"{s}: {n}" for s, n in sorted(by_severity.items())) or "none"
    head = [
        f"Incidents from {report['from']} to {report['to']}: {counts['total']}",
        f"By severity: {severities}",
    ]
    timing_rows = [
        [name, t["count"], seconds(t.get("mean_seconds")), seconds(t.get("p90_seconds"))]
        for name, t in (
            ("acknowledge", report["time_to_acknowledge"]),
            ("resolve", report["time_to_resolve"]),
        )
    ]
    noisy = report["noisiest_alerts"]
    fired = [[a["alertname"], a["service"], a["fired"]] for a in noisy["most_fired"]]
    idle = [[a["alertname"], a["service"], a["incidents"]] for a in noisy["paged_without_action"]]
    parts = [
        "\n".join(head),
        _counts("By service", "service", counts.get("by_service") or []),
        _counts("By team", "team", counts.get("by_team") or []),
        "Time to:\n" + table(["TIME TO", "COUNT", "MEAN", "P90"], timing_rows),
        _counts("Top root causes", "service", report.get("top_root_causes") or []),
        "Most fired alerts:\n"
        + (table(["ALERTNAME", "SERVICE", "FIRED"], fired) if fired else "  none"),
        "Paged without action (no acknowledgement before the resolve):\n"
        + (table(["ALERTNAME", "SERVICE", "INCIDENTS"], idle) if idle else "  none"),
    ]
    return "\n\n".join(parts)


@client_command
def report(api: ApiClient, args: argparse.Namespace) -> int:
    """The summary report of a time range."""
    params = {
        k: v
        for k, v in (
            ("from", _check_time(args.since, "--from")),
            ("to", _check_time(args.until, "--to")),
        )
        if v is not None
    }
    found = api.get("/api/v1/reports/summary", params or None)
    if args.output == "json":
        print_json(found)
        return 0
    try:
        print(describe_report(found))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ClientError(f"the report is not of the expected shape (missing {exc})") from None
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `postmortem` and `report`."""
    conn = connection_flags()
    post = sub.add_parser("postmortem", parents=[conn], help="fetch an incident's postmortem")
    post.add_argument("id", metavar="ID", help="the incident's id (required)")
    post.add_argument("--format", choices=sorted(MEDIA), default="md", help="document format")
    post.add_argument(
        "-o", "--output", dest="file", metavar="FILE", help="write it here (default: stdout)"
    )
    post.set_defaults(run=postmortem)
    summary = sub.add_parser(
        "report", parents=[conn, output_flag()], help="incident counts, timings and noisy alerts"
    )
    summary.add_argument(
        "--from", dest="since", metavar="ISO", help="start of the range (default: the server's)"
    )
    summary.add_argument(
        "--to", dest="until", metavar="ISO", help="end of the range (default: now)"
    )
    summary.set_defaults(run=report)
