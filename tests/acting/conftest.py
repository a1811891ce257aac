from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tests.acting.stage import Stage, start
from tests.notify.fake_slack import FakeSlack
from tests.notify.fake_twilio import FakeTwilio


@pytest.fixture
def stage(db_url: str, client_for: Callable[..., TestClient]) -> Iterator[Stage]:
    with FakeSlack() as slack, FakeTwilio() as twilio:
        made = start(db_url, client_for, slack, twilio)
        yield made
        made.pipe.close()
