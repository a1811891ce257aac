"""The `incidents` command: serve, migrate, check the config, run workers."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from incidents import __version__
from incidents.config import Settings, load_settings
from incidents.config_check import masked_settings, unknown_environment
from incidents.exceptions import ConfigError, Unavailable

log = logging.getLogger("incidents.cli")


def _warn_unknown_settings() -> None:
    for message in unknown_environment():
        log.warning(message)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from incidents.api.app import create_app
    from incidents.logging import configure_logging
    from incidents.migrate import check_database, upgrade

    configure_logging(settings.log_level, settings.log_json)
    _warn_unknown_settings()
    check_database(settings.database_url)
    if not args.no_migrate:
        upgrade(settings.database_url)
    app = create_app(settings)
    from incidents.api.server import uvicorn_options

    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,
        loop="auto",
        timeout_graceful_shutdown=10,
        **uvicorn_options(settings.http),  # header timeout, keep-alive, connection limit
    )
    return 0


def _db(settings: Settings, args: argparse.Namespace) -> int:
    from incidents.migrate import check_database, current, upgrade

    check_database(settings.database_url)
    if args.action == "upgrade":
        upgrade(settings.database_url, args.revision)
        print(f"database is at {args.revision}")
    else:
        current(settings.database_url)
    return 0


def _check(settings: Settings, _: argparse.Namespace) -> int:
    from incidents.oncall.config_file import summary as oncall_summary

    print(json.dumps(masked_settings(settings), indent=2))
    for message in unknown_environment():
        print(f"incidents: WARNING: {message}", file=sys.stderr)
    source = settings.config or "none (environment and defaults only)"
    if settings.api_token:
        auth = "on: API keys, and the bootstrap token INCIDENTS_API_TOKEN (every scope)"
    else:
        auth = "on: API keys only (make one with `incidents apikey create`)"
    print(f"incidents: config file: {source}", file=sys.stderr)
    print(f"incidents: authentication is {auth}", file=sys.stderr)
    for line in oncall_summary(settings.users, settings.schedules):
        print(f"incidents: {line}", file=sys.stderr)
    from incidents.playbooks.catalog import catalog_of

    if settings.playbooks.folder:
        count = len(catalog_of(settings.playbooks))  # ConfigError lists every problem
        print(f"incidents: {count} playbook(s) in {settings.playbooks.folder}", file=sys.stderr)
    print("incidents: the configuration is valid", file=sys.stderr)
    return 0


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _print_problems(path: str, exc: Exception) -> None:
    """One `file:line: field: message` line per problem, after the summary."""
    from incidents.exceptions import ValidationFailed

    assert isinstance(exc, ValidationFailed)
    print(f"incidents: {exc.message}", file=sys.stderr)
    errors = exc.extra.get("errors", [])
    if len(errors) == 1 and errors[0]["field"] == "document":
        return
    for error in errors:
        line = error.get("line")
        where = f"{path}:{line}" if line is not None else path
        print(f"{where}: {error['field']}: {error['message']}", file=sys.stderr)


def _graph_load(settings: Settings, args: argparse.Namespace) -> int:
    from incidents.correlation.graph import ServiceGraph
    from incidents.correlation.store import log_replacement, replace_graph
    from incidents.db import create_db_engine, make_session_factory, session_scope
    from incidents.exceptions import ValidationFailed
    from incidents.migrate import require_schema

    try:
        graph = ServiceGraph.from_file(args.file)
    except OSError as exc:
        print(f"incidents: {args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    except ValidationFailed as exc:
        _print_problems(args.file, exc)
        return 1
    require_schema(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            replacement = replace_graph(
                session,
                graph,
                by=f"cli:{_user()}",
                via="cli",
                allow_empty=args.allow_empty,
            )
    except ValidationFailed as exc:
        print(f"incidents: {args.file}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    log_replacement(replacement, graph_file=args.file)
    print(f"service graph loaded from {args.file}: {len(graph)} services, {replacement.describe()}")
    return 0


def _graph_show(settings: Settings, args: argparse.Namespace) -> int:
    import json

    import yaml

    from incidents.correlation.store import current_graph
    from incidents.db import create_db_engine, make_session_factory
    from incidents.migrate import require_schema

    require_schema(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            document = current_graph(session).to_document()
    finally:
        engine.dispose()
    if args.format == "json":
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")
    return 0


def _routing_test(settings: Settings, args: argparse.Namespace) -> int:
    from incidents.notify.routing import RoutingTree, describe_match, parse_label_args

    try:
        labels = parse_label_args(args.labels)
    except ValueError as exc:
        print(f"incidents: {exc}", file=sys.stderr)
        return 2
    tree = RoutingTree.from_settings(settings.routing)
    routes = tree.match(labels)
    if args.verbose:
        print("\n".join(describe_match(tree, routes)))
    else:
        # One receiver per line, as `amtool config routes test` names them; each once.
        print("\n".join(receiver.name for receiver in tree.receivers_of(routes)))
    return 0


def celery_worker(settings: Settings, args: argparse.Namespace, role: str) -> int:
    """Run a Celery worker (or beat) of this role under the supervisor."""
    from incidents.logging import configure_logging
    from incidents.supervisor import celery_command, supervise

    if settings.embedded_worker:
        print(
            "INCIDENTS_BROKER_URL is empty: the API process runs the work itself", file=sys.stderr
        )
        return 2
    configure_logging(settings.log_level, settings.log_json)
    _warn_unknown_settings()
    # Celery runs in a child process that is started again if it ever exits on its own.
    return supervise(celery_command(role, getattr(args, "concurrency", 1)), role)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" unless the help already says it or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default" in text:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Every parser and subparser shows defaults; subparsers are made of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _describe_commands(parser: argparse.ArgumentParser) -> None:
    # `incidents CMD --help` opens with what CMD does, even where only help= was given.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if child.description is None:
                    child.description = helps.get(name)
                _describe_commands(child)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `incidents` command."""
    fields = Settings.model_fields
    parser = _Parser(
        prog="incidents",
        description="Alert routing and incident management: Alertmanager webhooks in, "
        "incidents out. Settings come from INCIDENTS_* environment variables and the YAML "
        "file named by INCIDENTS_CONFIG.",
    )
    parser.add_argument("--version", action="version", version=f"incidents {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the HTTP API; without a broker it also runs the pipeline in this process",
    )
    serve.add_argument(
        "--host",
        help=f"address to listen on (default: INCIDENTS_HOST, else {fields['host'].default})",
    )
    serve.add_argument(
        "--port",
        type=int,
        help=f"port to listen on (default: INCIDENTS_PORT, else {fields['port'].default})",
    )
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="start without applying database migrations (default: apply them first)",
    )
    db = sub.add_parser("db", help="apply database migrations, or show the current revision")
    db.add_argument(
        "action",
        choices=["upgrade", "current"],
        help="upgrade: migrate to REVISION; current: print the database's revision (required)",
    )
    db.add_argument("revision", nargs="?", default="head", help="target revision of upgrade")
    check = sub.add_parser(
        "check-config",
        help="validate the settings and print them with secrets masked",
    )
    check.add_argument(
        "config_file",
        nargs="?",
        metavar="FILE",
        help="YAML config file to check (default: INCIDENTS_CONFIG, else none)",
    )
    worker = sub.add_parser(
        "worker", help="run a Celery worker for the pipeline (needs INCIDENTS_BROKER_URL)"
    )
    worker.add_argument("--concurrency", type=int, default=2, help="worker processes")
    notify = sub.add_parser(
        "notify-worker",
        help="run a Celery worker that sends notifications (the notify queue; needs "
        "INCIDENTS_BROKER_URL)",
    )
    notify.add_argument(
        "--concurrency", type=int, default=8, help="sending threads (one channel each at a time)"
    )
    sub.add_parser(
        "beat", help="run Celery beat, which sweeps the outbox (exactly one per deployment)"
    )
    graph = sub.add_parser("graph", help="load or print the stored service graph")
    graph_sub = graph.add_subparsers(dest="graph_command", required=True, metavar="ACTION")
    load = graph_sub.add_parser(
        "load", help="validate a graph file, store it for every replica and print what changed"
    )
    load.add_argument("file", help="YAML file (or .json) holding {services: [...]} (required)")
    load.add_argument(
        "--allow-empty", action="store_true", help="store a graph with no services (default: no)"
    )
    show = graph_sub.add_parser("show", help="print the stored service graph")
    show.add_argument("--format", choices=["yaml", "json"], default="yaml", help="output format")
    routing = sub.add_parser("routing", help="try the routing tree of the config file")
    routing_sub = routing.add_subparsers(dest="routing_command", required=True, metavar="ACTION")
    test = routing_sub.add_parser(
        "test", help="print the receivers an incident with the given labels would notify"
    )
    test.add_argument(
        "labels",
        nargs="*",
        metavar="NAME=VALUE",
        help="labels as routes see them: severity, service, root_service, root_team, status "
        "and alert labels (default: none)",
    )
    test.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="YAML config file (default: INCIDENTS_CONFIG, else the default routing)",
    )
    test.add_argument(
        "--verbose",
        action="store_true",
        help="also print each matched route, its options and the receiver's targets "
        "(default: receiver names only)",
    )
    from incidents.commands import register_all

    register_all(sub)
    _describe_commands(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        run = getattr(args, "run", None)
        if run is not None:
            code: int = run(args)
            return code
        settings = load_settings(getattr(args, "config_file", None))
        run_with_settings = getattr(args, "run_with_settings", None)
        if run_with_settings is not None:
            code = run_with_settings(settings, args)
            return code
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "db":
            return _db(settings, args)
        if args.command == "check-config":
            return _check(settings, args)
        if args.command == "graph":
            if args.graph_command == "load":
                return _graph_load(settings, args)
            return _graph_show(settings, args)
        if args.command == "routing":
            return _routing_test(settings, args)
        role = "notify" if args.command == "notify-worker" else args.command
        return celery_worker(settings, args, role)
    except ConfigError as exc:
        print(f"incidents: {exc.message}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"incidents: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
