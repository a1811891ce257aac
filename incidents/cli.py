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
    return _celery(settings, args, args.command)


if __name__ == "__main__":
    sys.exit(main())
