"""Writers at the same time: no override is lost, and no schedule ends up naming a user
that another writer removed at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory, session_scope
from incidents.exceptions import Conflict, ValidationFailed
from incidents.oncall.documents import SchedulesDocument, UsersDocument
from incidents.oncall.store import (
    OverrideRequest,
    add_override,
    read_schedules,
    read_users,
    replace_schedules,
    replace_users,
)

from .documents import PRIMARY, USERS, schedules


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(db_url)
    made = make_session_factory(engine)
    with session_scope(made) as session:
        replace_users(session, UsersDocument.model_validate(USERS))
        replace_schedules(session, SchedulesDocument.model_validate(schedules(PRIMARY)))
    yield made
    engine.dispose()


def _together(tasks: list[Callable[[], None]]) -> list[BaseException]:
    barrier = threading.Barrier(len(tasks))
    errors: list[BaseException] = []

    def run(task: Callable[[], None]) -> None:
        barrier.wait()
        try:
            task()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_overrides_added_at_once_are_all_kept(factory: sessionmaker[Session]) -> None:
    start = datetime(2026, 11, 3, tzinfo=UTC)

    def adder(hour: int) -> Callable[[], None]:
        def add() -> None:
            request = OverrideRequest(
                "carol", start + timedelta(hours=hour), start + timedelta(hours=hour + 1)
            )
            with session_scope(factory) as session:
                add_override(session, "primary", request)

        return add

    assert _together([adder(h) for h in range(12)]) == []
    with factory() as session:
        overrides = read_schedules(session).schedules[0].overrides
    assert len(overrides) == 12
    assert len({o.id for o in overrides}) == 12


def test_a_user_removed_while_a_schedule_starts_naming_them(
    factory: sessionmaker[Session],
) -> None:
    with_dave = UsersDocument.model_validate(
        {"users": [*USERS["users"], {"name": "dave", "phone": "+15005550009"}]}
    )
    without_dave = UsersDocument.model_validate(USERS)
    naming_dave = SchedulesDocument.model_validate(
        schedules(dict(PRIMARY, layers=[dict(PRIMARY["layers"][0], users=["alice", "dave"])]))
    )
    for _ in range(5):
        with session_scope(factory) as session:
            replace_schedules(session, SchedulesDocument.model_validate(schedules(PRIMARY)))
            replace_users(session, with_dave)

        def remove() -> None:
            with session_scope(factory) as session:
                replace_users(session, without_dave)

        def name() -> None:
            with session_scope(factory) as session:
                replace_schedules(session, naming_dave)

        errors = _together([remove, name])
        # One of the two may be refused (409 or 422); both never succeed.
        assert len(errors) <= 1, errors
        assert all(isinstance(e, Conflict | ValidationFailed) for e in errors), errors
        with factory() as session:
            users = {u.name for u in read_users(session).users}
            named = {
                n
                for s in read_schedules(session).schedules
                for layer in s.layers
                for n in layer.users
            }
        assert named <= users
