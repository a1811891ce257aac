"""The users and schedules documents in the `config_documents` table.

One row per kind (`users`, `schedules`), replaced whole. Every write first takes both
rows (schedules, then users: one order everywhere, so writers cannot deadlock), so that
"every user a schedule names exists" holds whichever of the two documents changes. On
PostgreSQL that is `SELECT ... FOR UPDATE`; on SQLite the first statement of a write is
an INSERT, which takes the database's one write lock.

Besides the document, a row remembers the digest of the config file's section it last
applied (`file_digest`), so a document replaced through the API stays until the file
changes again, as the service graph does.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from incidents.db import utcnow
from incidents.exceptions import Conflict, NotFound, ValidationFailed
from incidents.models import CONFIG_DOCUMENTS
from incidents.oncall.documents import (
    Override,
    Schedule,
    SchedulesDocument,
    User,
    UsersDocument,
    problems_of,
    raise_problems,
    references,
    resolve,
    unknown_users,
)

USERS: Final = "users"
SCHEDULES: Final = "schedules"
_EMPTY: Final[dict[str, dict[str, Any]]] = {USERS: {"users": []}, SCHEDULES: {"schedules": []}}
# Ids of overrides that came from the config file; the API's never start so.
FILE_PREFIX: Final = "file-"
_TABLE = CONFIG_DOCUMENTS

_lock = threading.Lock()
_cache: dict[str, tuple[tuple[int, datetime], Any]] = {}


def _stamp(session: Session, kind: str) -> tuple[int, datetime] | None:
    row = session.execute(
        select(_TABLE.c.version, _TABLE.c.updated_at).where(_TABLE.c.kind == kind)
    ).one_or_none()
    return None if row is None else (row.version, row.updated_at)


def _raw(session: Session, kind: str) -> dict[str, Any]:
    document = session.scalar(select(_TABLE.c.document).where(_TABLE.c.kind == kind))
    return dict(document) if document is not None else dict(_EMPTY[kind])


def _parsed(session: Session, kind: str) -> Any:
    stamp = _stamp(session, kind)
    cached = _cache.get(kind)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    raw = _raw(session, kind)
    raw.pop("file_digest", None)
    model = UsersDocument if kind == USERS else SchedulesDocument
    parsed = model.model_validate(raw)
    if stamp is not None:
        with _lock:
            _cache[kind] = (stamp, parsed)
    return parsed


def read_users(session: Session) -> UsersDocument:
    """The stored users (none when never written)."""
    document: UsersDocument = _parsed(session, USERS)
    return document


def read_schedules(session: Session) -> SchedulesDocument:
    """The stored schedules (none when never written)."""
    document: SchedulesDocument = _parsed(session, SCHEDULES)
    return document


def find_schedule(session: Session, name: str) -> Schedule:
    """The schedule of this name, or NotFound."""
    for schedule in read_schedules(session).schedules:
        if schedule.name == name:
            return schedule
    raise NotFound(f"no schedule {name[:80]!r}", field="name")


def lock_documents(session: Session) -> None:
    """Make sure both rows exist and hold them until the transaction ends."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for kind in (SCHEDULES, USERS):
        session.execute(
            insert(_TABLE)
            .values(kind=kind, document=_EMPTY[kind], version=0, updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=["kind"])
        )
    if dialect == "postgresql":
        session.execute(
            select(_TABLE.c.kind)
            .where(_TABLE.c.kind.in_((SCHEDULES, USERS)))
            .order_by(_TABLE.c.kind)
            .with_for_update()
        )


def write(session: Session, kind: str, data: dict[str, Any], file_digest: str | None) -> None:
    if file_digest is not None:
        data = {**data, "file_digest": file_digest}
    session.execute(
        update(_TABLE)
        .where(_TABLE.c.kind == kind)
        .values(document=data, version=_TABLE.c.version + 1, updated_at=utcnow())
    )


def dump(document: UsersDocument | SchedulesDocument) -> dict[str, Any]:
    """A document as stored and shown: JSON types, unset fields left out."""
    data: dict[str, Any] = document.model_dump(mode="json", exclude_none=True)
    return data


def file_digest(session: Session, kind: str) -> str | None:
    digest = _raw(session, kind).get("file_digest")
    return digest if isinstance(digest, str) else None


def still_named(schedules: SchedulesDocument, users: UsersDocument) -> list[str]:
    names = {user.name for user in users.users}
    found: dict[str, list[str]] = {}
    for path, schedule, user in references(schedules):
        if user not in names:
            del path
            found.setdefault(user, [])
            if schedule not in found[user]:
                found[user].append(schedule)
    return [f"{user!r} (schedule {', '.join(map(repr, s))})" for user, s in found.items()]


def replace_users(session: Session, document: UsersDocument) -> UsersDocument:
    """Store a new users document; Conflict when it drops a user a schedule still names."""
    lock_documents(session)
    missing = still_named(read_schedules(session), document)
    if missing:
        raise Conflict(
            f"users: schedules still name {'; '.join(missing[:10])}: take them out of the "
            "schedules first",
            field="users",
        )
    write(session, USERS, dump(document), file_digest(session, USERS))
    return document


def with_ids(document: SchedulesDocument) -> SchedulesDocument:
    """The document with an id on every override (a new random one where none was given)."""
    schedules = []
    for schedule in document.schedules:
        overrides = [
            o if o.id is not None else o.model_copy(update={"id": new_id()})
            for o in schedule.overrides
        ]
        schedules.append(schedule.model_copy(update={"overrides": overrides}))
    return SchedulesDocument(schedules=schedules)


def new_id() -> str:
    """A fresh override id."""
    return secrets.token_hex(6)


def replace_schedules(session: Session, document: SchedulesDocument) -> SchedulesDocument:
    """Store a new schedules document; ValidationFailed names each unknown user."""
    lock_documents(session)
    problems = unknown_users(document, (u.name for u in read_users(session).users))
    if problems:
        raise_problems("schedules", problems)
    stored = with_ids(document)
    write(session, SCHEDULES, dump(stored), file_digest(session, SCHEDULES))
    return stored


@dataclass(frozen=True)
class OverrideRequest:
    """An override to add: who, from when, until when (naive times in the schedule's zone)."""

    user: str
    start: datetime
    end: datetime


def add_override(session: Session, name: str, request: OverrideRequest) -> Override:
    """Add an override to a schedule; it gets a new id."""
    lock_documents(session)
    document = read_schedules(session)
    schedule = find_schedule(session, name)
    if request.user not in {u.name for u in read_users(session).users}:
        raise ValidationFailed(f"user: no user {request.user!r}", field="user")
    start = resolve(request.start, schedule.time_zone)
    if resolve(request.end, schedule.time_zone) <= start:
        raise ValidationFailed("to: must be after `from`", field="to")
    override = Override(id=new_id(), user=request.user, from_=request.start, to=request.end)
    changed = schedule.model_copy(update={"overrides": [*schedule.overrides, override]})
    _store_one(session, document, changed)
    return override


def remove_override(session: Session, name: str, override_id: str) -> Override:
    """Remove one override of a schedule by id; NotFound when there is none."""
    lock_documents(session)
    document = read_schedules(session)
    schedule = find_schedule(session, name)
    kept = [o for o in schedule.overrides if o.id != override_id]
    if len(kept) == len(schedule.overrides):
        raise NotFound(f"no override {override_id[:80]!r} in schedule {name!r}", field="id")
    removed = next(o for o in schedule.overrides if o.id == override_id)
    _store_one(session, document, schedule.model_copy(update={"overrides": kept}))
    return removed


def _store_one(session: Session, document: SchedulesDocument, schedule: Schedule) -> None:
    schedules = [schedule if s.name == schedule.name else s for s in document.schedules]
    # Validated again as a whole: limits such as the number of overrides hold.
    try:
        checked = SchedulesDocument.model_validate({"schedules": [_dump_one(s) for s in schedules]})
    except ValidationError as exc:
        raise_problems("schedules", problems_of(exc))
    write(session, SCHEDULES, dump(checked), file_digest(session, SCHEDULES))


def _dump_one(schedule: Schedule) -> dict[str, Any]:
    data: dict[str, Any] = schedule.model_dump(mode="json", exclude_none=True)
    return data


def section_digest(items: Sequence[User] | Sequence[Schedule]) -> str:
    """The digest of a config file section, to tell whether it changed since applied."""
    data = [item.model_dump(mode="json", exclude_none=True) for item in items]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def file_ids(document: SchedulesDocument) -> SchedulesDocument:
    """The config file's schedules with an id on each override: the same on every start,
    marked as the file's (`file-...`) so that applying the file again replaces them."""
    schedules = []
    for schedule in document.schedules:
        overrides = []
        for index, override in enumerate(schedule.overrides):
            if override.id is None:
                text = json.dumps([schedule.name, index, override.model_dump(mode="json")])
                digest = hashlib.sha256(text.encode()).hexdigest()[:12]
                override = override.model_copy(update={"id": FILE_PREFIX + digest})
            overrides.append(override)
        schedules.append(schedule.model_copy(update={"overrides": overrides}))
    return SchedulesDocument(schedules=schedules)
