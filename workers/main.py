"""One Celery worker or beat process, as `incidents worker` and `incidents beat` start it.

Run under `incidents.supervisor`, which starts it again if it exits on its own.
"""

from __future__ import annotations

import argparse
import sys

from incidents.config import get_settings
from incidents.logging import configure_logging
from incidents.tasks import QUEUE

# Gossip, mingle and the event heartbeat are cluster chatter we do not use; each is one
# more channel that has to be torn down and rebuilt when the broker goes away.
WORKER_FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat"]


def main(argv: list[str] | None = None) -> int:
    """Start a Celery worker or beat in this process."""
    parser = argparse.ArgumentParser(prog="python -m workers.main", description=__doc__)
    parser.add_argument("role", choices=["worker", "beat"])
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    from workers.app import celery_app

    celery_argv = [args.role, "--loglevel", settings.log_level]
    notifier = None
    if args.role == "worker":
        celery_argv += ["--concurrency", str(args.concurrency), "-Q", QUEUE, *WORKER_FLAGS]
        if settings.notify.enabled:
            # Notifications go out from the worker process: one thread per channel, so a
            # slow channel never holds up another, and never up the pipeline's tasks.
            from incidents.db import create_db_engine, make_session_factory
            from incidents.notify.setup import make_notify_worker

            sessions = make_session_factory(create_db_engine(settings.database_url))
            notifier = make_notify_worker(sessions, settings)
            notifier.start()
    try:
        celery_app.start(argv=celery_argv)
    finally:
        if notifier is not None:
            notifier.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
