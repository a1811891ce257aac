"""The `incidents` command: serve, migrate, check the config, run workers."""

from __future__ import annotations

import argparse
import sys

from incidents.config import Settings, load_settings
from incidents.exceptions import ConfigError


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from incidents.api.app import create_app
    from incidents.logging import configure_logging
    from incidents.migrate import upgrade

    configure_logging(settings.log_level, settings.log_json)
    if not args.no_migrate:
        upgrade(settings.database_url)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=10,
    )
    return 0


def _db(settings: Settings, args: argparse.Namespace) -> int:
    from incidents.migrate import current, upgrade

    if args.action == "upgrade":
        upgrade(settings.database_url, args.revision)
        print(f"database is at {args.revision}")
    else:
        current(settings.database_url)
    return 0


def _check(settings: Settings, _: argparse.Namespace) -> int:
    print(settings.model_dump_json(indent=2, exclude={"api_token"}))
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

    try:
        graph = ServiceGraph.from_file(args.file)
    except OSError as exc:
        print(f"incidents: {args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    except ValidationFailed as exc:
        _print_problems(args.file, exc)
        return 1
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


def _celery(settings: Settings, args: argparse.Namespace, role: str) -> int:
    from incidents.logging import configure_logging
    from workers.app import celery_app

    if settings.embedded_worker:
        print(
            "INCIDENTS_BROKER_URL is empty: the API process runs the work itself", file=sys.stderr
        )
        return 2
    configure_logging(settings.log_level, settings.log_json)
    argv = [role, "--loglevel", settings.log_level]
    if role == "worker":
        argv += ["--concurrency", str(args.concurrency), "-Q", "incidents"]
    celery_app.start(argv=argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="incidents", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (and the embedded worker without a broker)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "current"])
    db.add_argument("revision", nargs="?", default="head")
    sub.add_parser("check-config", help="validate the configuration and print it")
    worker = sub.add_parser("worker", help="run a Celery worker (needs INCIDENTS_BROKER_URL)")
    worker.add_argument("--concurrency", type=int, default=2)
    sub.add_parser("beat", help="run Celery beat, which sweeps the outbox")
    graph = sub.add_parser("graph", help="the stored service graph")
    graph_sub = graph.add_subparsers(dest="graph_command", required=True)
    load = graph_sub.add_parser("load", help="validate a graph file and store it")
    load.add_argument("file", help="YAML file (or .json) holding {services: [...]}")
    load.add_argument(
        "--allow-empty", action="store_true", help="store a graph with no services (default: no)"
    )
    show = graph_sub.add_parser("show", help="print the stored graph")
    show.add_argument(
        "--format", choices=["yaml", "json"], default="yaml", help="output format (default: yaml)"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"incidents: {exc.message}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "db":
        return _db(settings, args)
    if args.command == "check-config":
        return _check(settings, args)
    if args.command == "graph":
        return (
            _graph_load(settings, args)
            if args.graph_command == "load"
            else _graph_show(settings, args)
        )
    return _celery(settings, args, args.command)


if __name__ == "__main__":
    sys.exit(main())
