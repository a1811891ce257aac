"""Flood protection per contact, through the real SMS channel and twilio Client against
the local Twilio stand-in: at most 5 texts per 15 minutes per number; the rest go in one
summary, and once the window is full, waiting texts are held, never dropped."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory, utcnow
from incidents.notify.base import build
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.worker import NotifyWorker
from tests.notify.fake_twilio import FakeTwilio
from tests.notify.test_outbox import incident, queue

NUMBER = "+15005550006"


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def statuses(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(sa.select(NOTIFICATIONS.c.status).order_by(NOTIFICATIONS.c.id)))


def test_a_burst_to_one_number_is_capped_and_summarised_then_held(
    sessions: sessionmaker[Session],
) -> None:
    with FakeTwilio() as twilio:
        sms = build("sms", twilio.settings())
        worker = NotifyWorker(sessions, {"sms": sms}, public_url="")
        ids = [incident(sessions) for _ in range(8)]
        for iid in ids:
            queue(sessions, iid, "sms", NUMBER)
        assert worker.run_once("sms") == 8
        texts = [m["Body"] for m in twilio.messages()]
        assert len(texts) == 5  # 4 alone + 1 summary: the window's 5
        assert texts[4].startswith("4 more incidents: ")
        assert all(f"#{iid}" in texts[4] for iid in ids[4:])
        assert statuses(sessions) == ["sent"] * 5 + ["bundled"] * 3

        # The window is full: two more wait, held for when it has room.
        later = [incident(sessions) for _ in range(2)]
        for iid in later:
            queue(sessions, iid, "sms", NUMBER)
        worker.run_once("sms")
        assert len(twilio.messages()) == 5
        assert statuses(sessions)[-2:] == ["pending", "pending"]
        with sessions() as session:
            held = session.execute(
                sa.select(NOTIFICATIONS.c.not_before, NOTIFICATIONS.c.attempts).where(
                    NOTIFICATIONS.c.incident_id == later[0]
                )
            ).one()
        assert held.not_before > utcnow() + timedelta(minutes=14)
        assert held.attempts == 0  # holding is not a failed attempt
