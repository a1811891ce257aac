"""`incidents apikey create|list|revoke`: API keys, straight in the server's database.

This is how the first key of a server is made (no key is needed to run it, only the
server's settings). `create` prints the key alone on standard output, so a script can
capture it; everything else goes to standard error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from incidents.apikeys import store
from incidents.apikeys.scopes import SCOPES
from incidents.config import Settings
from incidents.db import create_db_engine, make_session_factory, session_scope, utcnow
from incidents.exceptions import Conflict, NotFound, ValidationFailed
from incidents.migrate import require_schema


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `apikey` and its actions to the `incidents` parser."""
    apikey = sub.add_parser("apikey", help="make, list and revoke API keys (in the database)")
    actions = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="make a key and print it alone on standard output (shown once)"
    )
    create.add_argument("--name", required=True, help="unique among live keys (required)")
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        choices=list(SCOPES),
        help="a scope to grant; repeat for several (required)",
    )
    create.add_argument(
        "--owner", help="who answers for it; the actor of what it does (default: none)"
    )
    create.add_argument(
        "--expires-in-days", type=int, help="it stops working after this many days (default: never)"
    )
    create.set_defaults(run_with_settings=_create)
    listing = actions.add_parser("list", help="list the keys (never the keys themselves)")
    listing.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="output format"
    )
    listing.set_defaults(run_with_settings=_list)
    revoke = actions.add_parser("revoke", help="revoke a key by id, name or prefix")
    revoke.add_argument("key", metavar="NAME|ID", help="the key's name, id or prefix (required)")
    revoke.set_defaults(run_with_settings=_revoke)


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _fail(message: str) -> int:
    print(f"incidents: {message}", file=sys.stderr)
    return 1


def _create(settings: Settings, args: argparse.Namespace) -> int:
    now = utcnow()
    expires_at = None
    if args.expires_in_days is not None:
        if args.expires_in_days < 1:
            print("incidents: --expires-in-days: must be 1 or more", file=sys.stderr)
            return 2
        expires_at = now + timedelta(days=args.expires_in_days)
    require_schema(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            created = store.create_key(
                session,
                name=args.name,
                owner=args.owner,
                scopes=args.scopes,
                expires_at=expires_at,
                created_by=f"cli:{_user()}",
                now=now,
                server_secret=settings.auth.secret(),
            )
    except (ValidationFailed, Conflict) as exc:
        return _fail(exc.message)
    finally:
        engine.dispose()
    info = created.info
    print(
        f"incidents: made key {info.name!r} (id {info.id}, prefix {info.prefix}) with "
        f"{', '.join(info.scopes)}; it is shown once, below",
        file=sys.stderr,
    )
    print(created.key)
    return 0


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "-"


def _list(settings: Settings, args: argparse.Namespace) -> int:
    require_schema(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            keys = store.list_keys(session)
    finally:
        engine.dispose()
    now = utcnow()
    if args.output == "json":
        rows = [
            {
                "id": k.id,
                "name": k.name,
                "owner": k.owner,
                "scopes": k.scopes,
                "prefix": k.prefix,
                "state": k.state(now),
                "created_at": _when(k.created_at),
                "created_by": k.created_by,
                "last_used_at": None if k.last_used_at is None else _when(k.last_used_at),
                "expires_at": None if k.expires_at is None else _when(k.expires_at),
                "revoked_at": None if k.revoked_at is None else _when(k.revoked_at),
            }
            for k in keys
        ]
        print(json.dumps(rows, indent=2))
        return 0
    header = ("ID", "NAME", "OWNER", "SCOPES", "PREFIX", "STATE", "LAST USED", "EXPIRES")
    table = [header] + [
        (
            str(k.id),
            k.name,
            k.owner or "-",
            ",".join(k.scopes),
            k.prefix,
            k.state(now),
            _when(k.last_used_at),
            _when(k.expires_at),
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    require_schema(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            info = store.revoke_key(session, store.find_key(session, args.key), utcnow())
    except (NotFound, Conflict) as exc:
        return _fail(exc.message)
    finally:
        engine.dispose()
    seconds = settings.auth.cache_seconds
    print(
        f"incidents: revoked key {info.name!r} (id {info.id}); servers refuse it within "
        f"{seconds:g} seconds",
        file=sys.stderr,
    )
    return 0
