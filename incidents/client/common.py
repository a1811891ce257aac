"""What every client command shares: its connection flags, `-o`, and error handling."""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from incidents.client.connection import DEFAULT_URL, KEY_ENV, URL_ENV, UsageError, resolve
from incidents.client.http import DEFAULT_TIMEOUT, ApiClient, ClientError, ServerError

Command = Callable[[ApiClient, argparse.Namespace], int]


def connection_flags() -> argparse.ArgumentParser:
    """A parent parser with --url, --key and --client-config."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--url",
        help=f"the service's base URL (default: {URL_ENV}, else the config file, "
        f"else {DEFAULT_URL})",
    )
    group.add_argument(
        "--key",
        help=f"API key, sent as a Bearer token (default: {KEY_ENV}, else the config file)",
    )
    group.add_argument(
        "--client-config",
        metavar="FILE",
        help="YAML file with `url:` and `key:` (default: $XDG_CONFIG_HOME/incidents/"
        "client.yaml, else ~/.config/incidents/client.yaml, if it exists)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for an answer",
    )
    return parent


def output_flag() -> argparse.ArgumentParser:
    """A parent parser with -o table|json."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="table for people; json prints the server's JSON, for scripts",
    )
    return parent


def local_user() -> str:
    """Who runs the command, as the operating system names them."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "cli"


def fail(message: str) -> None:
    """Print one error line on stderr."""
    print(f"incidents: {message}", file=sys.stderr)


def print_json(data: Any) -> None:
    """JSON as the server sent it, indented."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


def client_command(fn: Command) -> Callable[[argparse.Namespace], int]:
    """Run `fn` with a client of the resolved connection; every failure is one line."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            connection = resolve(args.url, args.key, args.client_config)
            if not args.timeout > 0:
                raise UsageError("--timeout: must be a positive number of seconds")
            with ApiClient(connection, args.timeout) as api:
                return fn(api, args)
        except UsageError as exc:
            fail(str(exc))
            return 2
        except ServerError as exc:
            fail(exc.message)
            for detail in exc.details:
                print(f"  {detail}", file=sys.stderr)
            return 1
        except ClientError as exc:
            fail(exc.message)
            return 1
        except KeyboardInterrupt:
            return 130

    return run
