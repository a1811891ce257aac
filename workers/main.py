"""One Celery worker or beat process, as `incidents worker` and `incidents beat` start it.

Run under `incidents.supervisor`, which starts it again if it exits on its own.
"""

from __future__ import annotations

import argparse
import os
import sys

from incidents.config import get_settings
from incidents.logging import configure_logging
from incidents.tasks import NOTIFY_QUEUE, PLAYBOOK_QUEUE, QUEUE

# Gossip, mingle and the event heartbeat are cluster chatter we do not use; each is one
# more channel that has to be torn down and rebuilt when the broker goes away.
WORKER_FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat"]


def main(argv: list[str] | None = None) -> int:
    """Start a Celery worker or beat in this process."""
    parser = argparse.ArgumentParser(prog="python -m workers.main", description=__doc__)
    parser.add_argument("role", choices=["worker", "notify", "playbooks", "beat"])
    parser.add_argument(
        "--concurrency", type=int, default=2, help="processes, or threads for notify (default 2)"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    from workers.app import celery_app

    celery_argv = [args.role, "--loglevel", settings.log_level]
    if args.role == "worker":
        celery_argv += ["--concurrency", str(args.concurrency), "-Q", QUEUE, *WORKER_FLAGS]
    elif args.role == "notify":
        # Sending is waiting on providers: threads, one drain per channel at a time, so a
        # slow channel never holds up another (see incidents.notify.drain).
        celery_argv = ["worker", "--loglevel", settings.log_level, "--pool", "threads"]
        celery_argv += ["--concurrency", str(args.concurrency), "-Q", NOTIFY_QUEUE]
        celery_argv += ["-n", f"notify-{os.getpid()}@%h", *WORKER_FLAGS]
    elif args.role == "playbooks":
        # Steps wait on remote systems (HTTP, Kubernetes, scripts): threads.
        celery_argv = ["worker", "--loglevel", settings.log_level, "--pool", "threads"]
        celery_argv += ["--concurrency", str(args.concurrency), "-Q", PLAYBOOK_QUEUE]
        celery_argv += ["-n", f"playbooks-{os.getpid()}@%h", *WORKER_FLAGS]
    celery_app.start(argv=celery_argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
