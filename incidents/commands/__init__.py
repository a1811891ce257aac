"""Command families that add themselves to the `incidents` parser.

Each module listed in `FAMILIES` has `register(sub)`, which adds its parsers to the
subparsers action `sub` and sets one of these defaults on each leaf parser:

- `run(args) -> int`: a command that needs no server settings (a client of the API);
- `run_with_settings(settings, args) -> int`: a command that reads the settings
  (INCIDENTS_* and the config file) first, as `serve` does.

`cli.main` calls whichever is set. A command family lives in its own module so that
`cli.py` stays small and families can grow without touching each other.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# Modules with a `register(sub)` function, in the order their commands are listed.
FAMILIES: tuple[str, ...] = (
    "incidents.commands.playbooks",
    "incidents.commands.apikeys",
    "incidents.commands.client_alerts",
    "incidents.commands.client_incidents",
    "incidents.commands.client_reports",
)


def register_all(sub: argparse._SubParsersAction[Any]) -> None:
    """Add every family's commands to `sub`."""
    for name in FAMILIES:
        importlib.import_module(name).register(sub)
