"""`incidents playbooks validate|test` and `incidents playbook-worker`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from incidents.config import Settings
from incidents.exceptions import ConfigError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the playbook commands."""
    worker = sub.add_parser(
        "playbook-worker",
        help="run a Celery worker that runs remediation playbooks (the playbooks queue; "
        "needs INCIDENTS_BROKER_URL)",
    )
    worker.add_argument("--concurrency", type=int, default=4, help="runs at a time (threads)")
    worker.set_defaults(run_with_settings=_worker)
    playbooks = sub.add_parser("playbooks", help="check playbook files, or dry-run one")
    actions = playbooks.add_subparsers(dest="playbooks_command", required=True, metavar="ACTION")
    validate = actions.add_parser(
        "validate", help="check every playbook file of a folder; print file:line problems"
    )
    validate.add_argument("folder", metavar="DIR", help="the folder of playbook files (required)")
    validate.set_defaults(run_with_settings=_validate)
    test = actions.add_parser(
        "test",
        help="dry-run a playbook of the configured folder against a stored incident and "
        "print what each step would do",
    )
    test.add_argument("playbook", metavar="ID", help="the playbook's id (required)")
    test.add_argument("--incident", type=int, required=True, help="the incident's id (required)")
    test.add_argument(
        "--folder", help="the playbook folder (default: playbooks.folder of the settings)"
    )
    test.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="output format"
    )
    test.set_defaults(run_with_settings=_test)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from incidents.cli import celery_worker

    return celery_worker(settings, args, "playbooks")


def _validate(settings: Settings, args: argparse.Namespace) -> int:
    from incidents.playbooks.catalog import load_folder

    try:
        catalog = load_folder(args.folder, settings.playbooks)
    except ConfigError as exc:
        print(f"incidents: {exc.message}", file=sys.stderr)
        return 1
    for loaded in catalog.playbooks.values():
        p = loaded.playbook
        events = ", ".join(sorted({t.event for t in p.triggers})) or "manual only"
        print(f"{p.id}: {len(p.steps)} steps, triggers: {events} ({loaded.source})")
    print(f"incidents: {len(catalog)} playbook(s) in {args.folder} are valid", file=sys.stderr)
    return 0


def _test(settings: Settings, args: argparse.Namespace) -> int:
    from incidents.db import create_db_engine, make_session_factory
    from incidents.exceptions import IncidentsError
    from incidents.migrate import require_schema
    from incidents.playbooks.catalog import catalog_of, load_folder
    from incidents.playbooks.manual import dry_run_now

    catalog = (
        load_folder(args.folder, settings.playbooks)
        if args.folder
        else catalog_of(settings.playbooks)
    )
    loaded = catalog.get(args.playbook)
    if loaded is None:
        known = ", ".join(sorted(catalog.playbooks)) or "none"
        print(f"incidents: no playbook {args.playbook!r} (known: {known})", file=sys.stderr)
        return 2
    require_schema(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        report = dry_run_now(make_session_factory(engine), settings, loaded, args.incident)
    except IncidentsError as exc:
        print(f"incidents: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.output == "json":
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"dry run {report['id']} of {report['playbook_id']} on incident {args.incident}:")
    for step in report["steps"]:
        said = (step.get("result") or {}).get("would") or step.get("error") or ""
        print(f"  {step['position']:>2}  {step['name']:<20} {step['status']:<10} {said}")
    return 0
