"""`incidents alert query` and `incidents silence add|query|expire`: amtool's verbs,
against this service's API."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from incidents.client.common import (
    client_command,
    connection_flags,
    fail,
    local_user,
    output_flag,
    print_json,
)
from incidents.client.connection import UsageError
from incidents.client.http import ApiClient, ServerError
from incidents.client.tables import parse_duration, parse_time, table, when
from incidents.exceptions import ValidationFailed
from incidents.routing.matcher_syntax import OPERATORS
from incidents.routing.matchers import Matcher, Op, parse_matchers

PAGE = 1000


def read_matchers(texts: list[str], where: str = "matcher") -> list[Matcher]:
    """Matchers from the command line, as amtool reads them: a bare word is an alertname."""
    out: list[Matcher] = []
    for index, text in enumerate(texts):
        if not any(op in text for op in OPERATORS) and "{" not in text:
            out.append(Matcher.create("alertname", Op.EQ, text))
            continue
        try:
            out.extend(parse_matchers(text, where=f"{where} {index + 1}"))
        except ValidationFailed as exc:
            raise UsageError(exc.message) from None
    return out


def _alert_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for a in items:
        labels = a.get("labels") or {}
        muted = "silenced" if a.get("silenced_by") else ""
        if a.get("inhibited_by"):
            muted = "inhibited"
        annotations = a.get("annotations") or {}
        summary = annotations.get("summary") or annotations.get("description") or ""
        rows.append(
            [
                labels.get("alertname", "-"),
                a.get("service") or "-",
                a["severity"],
                a["status"],
                muted or "-",
                when(a["starts_at"]),
                summary,
            ]
        )
    return rows


@client_command
def alert_query(api: ApiClient, args: argparse.Namespace) -> int:
    """List alerts that match every matcher."""
    matchers = read_matchers(args.matchers)
    params: dict[str, Any] = {"filter": [str(m) for m in matchers]}
    if args.status != "all":
        params["status"] = args.status
    if args.service:
        params["service"] = args.service
    if args.severity:
        params["severity"] = args.severity
    items: list[dict[str, Any]] = []
    cursor = None
    while len(items) < args.limit:
        params["limit"] = min(PAGE, args.limit - len(items))
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/v1/alerts", params)
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if args.output == "json":
        print_json(items)
        return 0
    headers = ["ALERTNAME", "SERVICE", "SEV", "STATUS", "MUTED", "STARTS (UTC)", "SUMMARY"]
    print(table(headers, _alert_rows(items)))
    return 0


def _silence_matches(silence: dict[str, Any], query: list[Matcher]) -> bool:
    # As amtool: each matcher asked for holds for the value some matcher of the silence
    # sets on the same label.
    own: dict[str, list[str]] = {}
    for text in silence.get("matchers") or []:
        for m in parse_matchers(text):
            own.setdefault(m.name, []).append(m.value)
    if silence.get("service"):
        own.setdefault("service", []).append(silence["service"])
    return all(any(q.matches({q.name: v}) for v in own.get(q.name, [])) for q in query)


@client_command
def silence_add(api: ApiClient, args: argparse.Namespace) -> int:
    """Create a silence; prints its id."""
    matchers = read_matchers(args.matchers)
    if not matchers and not args.service:
        raise UsageError("give at least one matcher (or --service for a maintenance window)")
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from None
    if args.start:
        try:
            start = parse_time(args.start)
        except ValueError:
            raise UsageError(f"--start: {args.start!r} is not an ISO 8601 time") from None
    else:
        start = datetime.now(UTC)
    body: dict[str, Any] = {
        "matchers": [str(m) for m in matchers],
        "ends_at": (start + duration).isoformat(),
        "created_by": args.author or local_user(),
        "comment": args.comment,
    }
    if args.start:
        body["starts_at"] = start.isoformat()
    if args.service:
        body["service"] = args.service
    created = api.post("/api/v1/silences", body)
    if args.output == "json":
        print_json(created)
    else:
        print(created["id"])
    return 0


@client_command
def silence_query(api: ApiClient, args: argparse.Namespace) -> int:
    """List silences (not expired ones unless --expired), filtered by matchers."""
    query = read_matchers(args.matchers)
    found = api.get("/api/v1/silences", {"state": "expired"} if args.expired else None)
    chosen = [s for s in found if _silence_matches(s, query)]
    if args.output == "json":
        print_json(chosen)
    elif args.quiet:
        for silence in chosen:
            print(silence["id"])
    else:
        rows = [
            [
                s["id"],
                ",".join(s["matchers"]) + (f" service={s['service']}" if s.get("service") else ""),
                s["state"],
                when(s["starts_at"]),
                when(s["ends_at"]),
                s["created_by"],
                s["comment"],
            ]
            for s in chosen
        ]
        headers = ["ID", "MATCHERS", "STATE", "STARTS (UTC)", "ENDS (UTC)", "CREATED BY"]
        print(table([*headers, "COMMENT"], rows))
    return 0


@client_command
def silence_expire(api: ApiClient, args: argparse.Namespace) -> int:
    """Expire silences by id; each failure is reported, and the others still expire."""
    failed = 0
    for silence_id in args.ids:
        try:
            api.delete(f"/api/v1/silences/{silence_id}")
        except ServerError as exc:
            fail(f"{silence_id}: {exc.message}")
            failed += 1
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `alert` and `silence`."""
    conn, out = connection_flags(), output_flag()
    alert = sub.add_parser("alert", help="query the alerts of a running service (as amtool)")
    alert_sub = alert.add_subparsers(dest="alert_command", required=True, metavar="ACTION")
    query = alert_sub.add_parser(
        "query", parents=[conn, out], help="list alerts matching every matcher"
    )
    query.add_argument(
        "matchers",
        nargs="*",
        metavar="MATCHER",
        help='Alertmanager matchers, e.g. service="api" or \'{severity=~"P0|P1"}\'; a bare '
        "word means alertname=WORD (default: all alerts)",
    )
    query.add_argument(
        "--status", choices=["firing", "resolved", "all"], default="firing", help="which alerts"
    )
    query.add_argument("--service", help="only alerts about this service (default: any)")
    query.add_argument(
        "--severity",
        action="append",
        choices=["P0", "P1", "P2", "P3"],
        help="only these severities; repeatable (default: all)",
    )
    query.add_argument("--limit", type=int, default=200, help="show at most this many")
    query.set_defaults(run=alert_query)

    silence = sub.add_parser("silence", help="add, query or expire silences (as amtool)")
    silence_sub = silence.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    add = silence_sub.add_parser(
        "add", parents=[conn, out], help="mute alerts matching every matcher for a while"
    )
    add.add_argument(
        "matchers",
        nargs="*",
        metavar="MATCHER",
        help="Alertmanager matchers, all of which an alert must match (required, unless --service)",
    )
    add.add_argument("-d", "--duration", default="1h", help="how long: 2h, 90m, 1h30m, 1d")
    add.add_argument("-c", "--comment", required=True, help="why (required)")
    add.add_argument("-a", "--author", help="who (default: the local user name)")
    add.add_argument("--start", help="ISO 8601 start with a zone (default: now)")
    add.add_argument(
        "--service", help="a service of the graph: a maintenance window (default: none)"
    )
    add.set_defaults(run=silence_add)
    squery = silence_sub.add_parser(
        "query", parents=[conn, out], help="list silences, filtered by matchers"
    )
    squery.add_argument(
        "matchers",
        nargs="*",
        metavar="MATCHER",
        help="show the silences these match (default: all)",
    )
    squery.add_argument(
        "--expired",
        action="store_true",
        help="show expired silences instead of current ones (default: current ones)",
    )
    squery.add_argument(
        "-q", "--quiet", action="store_true", help="print only the ids (default: a table)"
    )
    squery.set_defaults(run=silence_query)
    expire = silence_sub.add_parser("expire", parents=[conn], help="end silences now")
    expire.add_argument("ids", nargs="+", metavar="ID", help="silence ids (required)")
    expire.set_defaults(run=silence_expire)
