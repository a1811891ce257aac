"""An approval request texted to a phone whose flood window is full still goes alone: a
summary would lose how to answer it, and holding it would let it expire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from incidents.db import create_db_engine, make_session_factory
from incidents.notify.approval_note import details
from incidents.notify.base import build
from incidents.notify.models import NOTIFICATIONS
from incidents.notify.worker import NotifyWorker
from tests.notify.fake_twilio import FakeTwilio
from tests.notify.test_outbox import incident, queue
from tests.remediation.test_approval_render import ASK

NUMBER = "+15005550006"


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def test_an_approval_is_never_bundled_nor_held(sessions: sessionmaker[Session]) -> None:
    with FakeTwilio() as twilio:
        worker = NotifyWorker(sessions, {"sms": build("sms", twilio.settings())}, public_url="")
        ids = [incident(sessions) for _ in range(8)]
        for iid in ids:
            queue(sessions, iid, "sms", NUMBER)
        asking = queue(sessions, ids[-1], "sms", NUMBER, key="entry:2")
        with sessions.begin() as session:
            session.execute(
                sa.update(NOTIFICATIONS)
                .where(NOTIFICATIONS.c.id == asking)
                .values(event="approval", details=details(ASK))
            )
        assert worker.run_once("sms") == 9
        texts = [m["Body"] for m in twilio.messages()]
        # The approval, 4 pages alone and the summary of the other 4.
        assert len(texts) == 6
        [request] = [t for t in texts if "playbook" in t]
        assert request.endswith("Reply 1y to approve, 1n to reject (or approve 4821)")
        assert texts[-1].startswith("4 more incidents: ")

        # The window is full: a page waits, a second request does not.
        later = queue(sessions, ids[0], "sms", NUMBER, key="entry:3")
        again = queue(sessions, ids[0], "sms", NUMBER, key="entry:4")
        with sessions.begin() as session:
            session.execute(
                sa.update(NOTIFICATIONS)
                .where(NOTIFICATIONS.c.id == again)
                .values(event="approval", details=details({**ASK, "run_id": 8, "code": 1234}))
            )
        worker.run_once("sms")
        with sessions() as session:
            rows = session.execute(
                sa.select(NOTIFICATIONS.c.id, NOTIFICATIONS.c.status).where(
                    NOTIFICATIONS.c.id.in_([later, again])
                )
            )
            status = {row.id: row.status for row in rows}
        assert status == {later: "pending", again: "sent"}
        assert "approve 1234" in twilio.messages()[-1]["Body"]
