"""The config file's `users:` and `schedules:` sections: checked with the settings, and
applied at start-up.

A section is applied when it differs from what the file held when last applied, so a
document replaced through the API stays until the file changes again (as the service
graph does). When the file's schedules are applied, overrides added through the API that
have not ended are kept, for the schedules and users that still exist: a swap arranged
in the API survives an edit of the rotation in the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import session_scope, utcnow
from incidents.documents import field_name
from incidents.exceptions import ConfigError, IncidentsError
from incidents.oncall.documents import (
    Schedule,
    SchedulesDocument,
    User,
    UsersDocument,
    resolve,
    unknown_users,
)
from incidents.oncall.fields import Problem
from incidents.oncall.store import (
    FILE_PREFIX,
    SCHEDULES,
    USERS,
    dump,
    file_digest,
    file_ids,
    lock_documents,
    read_schedules,
    read_users,
    section_digest,
    write,
)

log = logging.getLogger(__name__)


def apply_config(
    session: Session,
    users: Sequence[User] | None,
    schedules: Sequence[Schedule] | None,
    *,
    now: datetime | None = None,
) -> list[str]:
    """Apply the sections that changed since last applied, in the caller's transaction.

    Returns what was applied, for the log. ConfigError when the result would name users
    that do not exist (the file's schedules, or stored ones against the file's users).
    """
    if users is None and schedules is None:
        return []
    now = now or utcnow()
    lock_documents(session)
    new_users = read_users(session)
    users_digest = None
    if users is not None:
        digest = section_digest(users)
        if file_digest(session, USERS) != digest:
            new_users, users_digest = UsersDocument(users=list(users)), digest
    new_schedules = read_schedules(session)
    schedules_digest = None
    kept: list[str] = []
    if schedules is not None:
        digest = section_digest(schedules)
        if file_digest(session, SCHEDULES) != digest:
            from_file = file_ids(SchedulesDocument(schedules=list(schedules)))
            new_schedules, kept = _carry_over(from_file, new_schedules, new_users, now)
            schedules_digest = digest
    if users_digest is None and schedules_digest is None:
        return []
    problems = unknown_users(new_schedules, (u.name for u in new_users.users))
    if problems:
        raise ConfigError(
            "the config file's users and the schedules do not agree: "
            + "; ".join(_describe(p) for p in problems[:10])
        )
    applied = []
    if schedules_digest is not None:
        write(session, SCHEDULES, dump(new_schedules), schedules_digest)
        applied.append(
            f"schedules: {len(new_schedules.schedules)} from the config file"
            + (f", keeping {len(kept)} override(s) added through the API" if kept else "")
        )
    if users_digest is not None:
        write(session, USERS, dump(new_users), users_digest)
        applied.append(f"users: {len(new_users.users)} from the config file")
    return applied


def _describe(problem: Problem) -> str:
    path, message = problem
    return f"{field_name(path)}: {message}"


def _carry_over(
    from_file: SchedulesDocument, stored: SchedulesDocument, users: UsersDocument, now: datetime
) -> tuple[SchedulesDocument, list[str]]:
    names = {u.name for u in users.users}
    previous = {s.name: s for s in stored.schedules}
    kept: list[str] = []
    schedules = []
    for schedule in from_file.schedules:
        old = previous.get(schedule.name)
        extra = [
            o
            for o in (old.overrides if old is not None else [])
            if o.id is not None
            and not o.id.startswith(FILE_PREFIX)
            and o.user in names
            and resolve(o.to, schedule.time_zone) > now
        ]
        kept.extend(o.id for o in extra if o.id is not None)
        schedules.append(schedule.model_copy(update={"overrides": [*schedule.overrides, *extra]}))
    return SchedulesDocument(schedules=schedules), kept


def summary(
    users: Sequence[User] | None,
    schedules: Sequence[Schedule] | None,
    *,
    now: datetime | None = None,
) -> list[str]:
    """What `check-config` says about the sections: how many, and each gap (nobody on
    call) in the next 7 days, which is a warning, not an error."""
    from incidents.oncall.timeline import Plan

    now = now or utcnow()
    lines = []
    if users is not None:
        lines.append(f"users: {len(users)}")
    if schedules is not None:
        lines.append(f"schedules: {', '.join(s.name for s in schedules) or 'none'}")
        for schedule in schedules:
            gaps = Plan(schedule).gaps(now, now + timedelta(days=7))
            for gap in gaps[:5]:
                lines.append(
                    f"WARNING: schedule {schedule.name!r} has nobody on call from "
                    f"{gap.start:%Y-%m-%d %H:%M} to {gap.end:%Y-%m-%d %H:%M} UTC"
                )
    return lines


def apply_at_startup(
    sessions: sessionmaker[Session],
    users: Sequence[User] | None,
    schedules: Sequence[Schedule] | None,
) -> None:
    """Apply the config file's sections; a problem is logged, never stops the service
    (alerts must still be taken in while a schedule is being fixed)."""
    if users is None and schedules is None:
        return
    try:
        with session_scope(sessions) as session:
            applied = apply_config(session, users, schedules)
    except SQLAlchemyError:
        log.warning("database unavailable at start-up; the users and schedules were not applied")
        return
    except IncidentsError as exc:
        log.error("the config file's users and schedules were not applied: %s", exc.message)
        return
    for line in applied:
        log.info("applied %s", line)
