"""Health checks of the compose stack's own containers (the image has Python, not curl).

    python healthcheck.py http URL   exit 0 when URL answers 200 within 3 s
    python healthcheck.py celery     exit 0 when the Celery child that `incidents worker`,
                                     `notify-worker`, `playbook-worker` or `beat` supervises
                                     runs, and the broker accepts a TCP connection
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit


def http_ok(url: str) -> bool:
    """True when the URL answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (our URL)
            return bool(response.status == 200)
    except OSError:
        return False


def celery_child_running() -> bool:
    """True when a process runs `python -m workers.main ...` (the supervised child)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"workers.main" in argv:
            return True
    return False


def broker_reachable() -> bool:
    """True when the broker of INCIDENTS_BROKER_URL accepts a connection."""
    parts = urlsplit(os.environ.get("INCIDENTS_BROKER_URL", ""))
    if not parts.hostname:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=3):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    """Run the check named by argv; 0 healthy, 1 not, 2 usage."""
    if len(argv) == 2 and argv[0] == "http":
        return 0 if http_ok(argv[1]) else 1
    if argv == ["celery"]:
        return 0 if celery_child_running() and broker_reachable() else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
